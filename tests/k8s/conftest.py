"""Fixtures for the Kubernetes tests: a fake API server and Kiln objects wired to it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import yaml

from server.config import KubeSettings, Settings
from server.kube.reflector import PodReflector
from server.kube.runtime import KubeRuntime
from tests.k8s.fake_apiserver import FakeKubeAPI

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


async def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until ``check()`` is truthy (the watch delivers asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


async def synced(reflector: PodReflector, fake: FakeKubeAPI, timeout: float = 5.0) -> None:
    """Wait until the reflector has seen everything up to the fake's current version.

    BOOKMARKs carry the current resourceVersion even when the last change was
    not a pod (a Secret, say), so this never waits for a pod event that will
    not come; they are re-sent in case the watch was between connections.
    """
    target = fake.resource_version
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while int(reflector.resource_version or 0) < target:
        if loop.time() > deadline:
            raise AssertionError(f"reflector at {reflector.resource_version}, server at {target}")
        fake.send_bookmarks()
        await asyncio.sleep(0.02)
