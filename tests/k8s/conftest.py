"""Fixtures for the Kubernetes tests: a fake API server and Kiln objects wired to it."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))  # fake_apiserver, whatever the import mode

from fake_apiserver import FakeKubeAPI

from server.config import KubeSettings, Settings
from server.kube.runtime import KubeRuntime

NAMESPACE = "kiln"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """kubernetes-asyncio trusts proxy env vars; the fake is on loopback."""
    current = os.environ.get("NO_PROXY", "")
    monkeypatch.setenv("NO_PROXY", ",".join(filter(None, [current, "127.0.0.1", "localhost"])))


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeKubeAPI]:
    api = FakeKubeAPI()
    await api.start()
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
def kubeconfig_file(fake_api: FakeKubeAPI, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(fake_api.kubeconfig(NAMESPACE)))
    return path


def make_settings(tmp_path: Path, kubeconfig: Path, **kube: object) -> Settings:
    defaults: dict[str, object] = {
        "namespace": NAMESPACE,
        "kubeconfig": str(kubeconfig),
        "image": "ghcr.io/kiln-platform/kiln:1.2.3",
        "image_pull_secrets": ("regcred",),
        "node_selector": {"kiln.dev/pool": "runs"},
        "tolerations_json": '[{"key": "kiln.dev/runs", "operator": "Exists", '
        '"effect": "NoSchedule"}]',
        "extra_env": {"DBT_PROFILES_DIR": "/tmp/profiles"},
        "workspace_storage_class": "efs-rwx",
        "watch_restart_seconds": 300,
    }
    defaults.update(kube)
    return Settings(
        data_dir=tmp_path / "data",
        database_url=None,
        object_store=(tmp_path / "objects").as_uri(),
        s3=None,
        secret_keys=(),
        public_url="http://kiln-gateway.kiln.svc:8580",
        kube=KubeSettings(**defaults),  # type: ignore[arg-type]
    )


@pytest.fixture
def settings(tmp_path: Path, kubeconfig_file: Path) -> Settings:
    return make_settings(tmp_path, kubeconfig_file)


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[KubeRuntime]:
    rt = KubeRuntime(settings.kube)
    try:
        yield rt
    finally:
        await rt.close()
