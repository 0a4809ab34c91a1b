"""KubernetesSpawner against the fake API server, over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json

import kubernetes_validate
import pytest

from ide_broker.spawners.base import Endpoint, SpawnSpec
from ide_broker.spawners.kubernetes import KubernetesSpawner, SpawnError
from server.config import Settings
from server.kube.runtime import KubeRuntime
from server.launchers.base import LaunchSpec
from server.launchers.kubernetes import KubernetesRunLauncher
from tests.k8s.conftest import NAMESPACE, eventually, synced
from tests.k8s.fake_apiserver import FakeKubeAPI

SECRET = "develop-secret-8c1f0a"
SOURCE = "https://ci-bot:ghp_abc123@git.example.com/acme/shop.git"
PROFILES = (
    "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      password: hunter2\n"
)


def spawn_spec(session_id: int = 11, user_id: int = 5) -> SpawnSpec:
    return SpawnSpec(
        session_id=session_id,
        account_id=7,
        user_id=user_id,
        project_id=3,
        secret=SECRET,
        workspace_key=f"7/{user_id}/3",
        project_source=SOURCE,
        project_subdirectory="shop",
        default_branch="main",
        profiles_yml=PROFILES,
        env={"DBT_TARGET": "dev"},
    )


def spawner(settings: Settings, runtime: KubeRuntime, **kw: object) -> KubernetesSpawner:
    return KubernetesSpawner(spawn_spec(**kw), settings=settings, runtime=runtime)  # type: ignore[arg-type]


async def start_until_ready(s: KubernetesSpawner, fake: FakeKubeAPI) -> Endpoint:
    """start(), playing the kubelet: schedule, run not-ready, then ready."""
    task = asyncio.create_task(s.start())
    await eventually(lambda: fake.get("pods", NAMESPACE, s.pod_name) is not None)
    fake.schedule_pod(s.pod_name)
    fake.set_pod_running(s.pod_name, ready=False)
    await synced(await s.runtime.reflector(), fake)
    assert not task.done()  # running is not enough: it must be Ready
    fake.set_pod_running(s.pod_name, ready=True)
    return await asyncio.wait_for(task, 5)


async def test_start_creates_claim_secret_and_pod(
    settings: Settings, runtime: KubeRuntime, fake_api: FakeKubeAPI
) -> None:
    s = spawner(settings, runtime)
    endpoint = await start_until_ready(s, fake_api)
    pod = fake_api.get("pods", NAMESPACE, "kiln-ide-11")
    assert pod is not None
    assert endpoint == Endpoint(pod["status"]["podIP"], 8765)

    claim = fake_api.get("persistentvolumeclaims", NAMESPACE, "kiln-ws-7-5-3")
    assert claim is not None
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "efs-rwx"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["metadata"]["labels"]["kiln.dev/component"] == "workspace"

    secret = fake_api.get("secrets", NAMESPACE, "kiln-ide-11")
    assert secret is not None
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "KILN_DEVELOP_SECRET": SECRET,
        "profiles.yml": PROFILES,
        "KILN_PROJECT_SOURCE": SOURCE,
    }
    assert secret["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]

    # nothing secret in clear in the pod
    dumped = json.dumps(pod)
    for value in (SECRET, "hunter2", "ghp_abc123"):
        assert value not in dumped

    spec = pod["spec"]
    develop = spec["containers"][0]
    assert develop["command"] == [
        "kiln", "develop", "--workspace", "/workspace", "--project-subdir", "shop",
        "--host", "0.0.0.0", "--port", "8765", "--profiles-dir", "/kiln/profiles",
    ]  # fmt: skip
    env = {e["name"]: e for e in develop["env"]}
    assert env["KILN_DEVELOP_SECRET"]["valueFrom"] == {
        "secretKeyRef": {"name": "kiln-ide-11", "key": "KILN_DEVELOP_SECRET"}
    }
    assert env["DBT_TARGET"]["value"] == "dev"
    assert develop["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert develop["readinessProbe"]["httpGet"]["port"] == 8765
    mounts = {m["mountPath"]: m["name"] for m in develop["volumeMounts"]}
    assert mounts["/workspace"] == "workspace" and mounts["/kiln/profiles"] == "profiles"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["workspace"]["persistentVolumeClaim"] == {"claimName": "kiln-ws-7-5-3"}
    assert volumes["profiles"]["secret"]["secretName"] == "kiln-ide-11"
    clone = spec["initContainers"][0]
    clone_env = {e["name"]: e for e in clone["env"]}
    assert clone_env["KILN_PROJECT_SOURCE"]["valueFrom"]["secretKeyRef"]["name"] == "kiln-ide-11"
    assert clone_env["KILN_DEFAULT_BRANCH"]["value"] == "main"
    assert "git clone" in clone["command"][-1]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    labels = pod["metadata"]["labels"]
    assert labels["kiln.dev/component"] == "develop"
    assert labels["app.kubernetes.io/managed-by"] == "kiln"
    assert labels["kiln.dev/session-id"] == "11"

    assert await s.poll() is None


async def test_manifests_validate(settings: Settings, runtime: KubeRuntime) -> None:
    s = spawner(settings, runtime)
    for version in ("1.31", kubernetes_validate.latest_version()):
        for manifest in (s.pod_manifest(), s.secret_manifest(), s.claim_manifest()):
            kubernetes_validate.validate(manifest, version, strict=True)


async def test_workspace_outlives_sessions(
    settings: Settings, runtime: KubeRuntime, fake_api: FakeKubeAPI
) -> None:
    first = spawner(settings, runtime, session_id=11)
    await start_until_ready(first, fake_api)
    claim_uid = fake_api.get("persistentvolumeclaims", NAMESPACE, "kiln-ws-7-5-3")["metadata"][  # type: ignore[index]
        "uid"
    ]
    fake_api.bind_claim("kiln-ws-7-5-3")
    await first.stop()
    await eventually(lambda: fake_api.get("pods", NAMESPACE, "kiln-ide-11") is None)
    assert fake_api.get("secrets", NAMESPACE, "kiln-ide-11") is None
    await first.stop()  # idempotent

    second = spawner(settings, runtime, session_id=12)
    await start_until_ready(second, fake_api)
    claims = fake_api.list("persistentvolumeclaims", NAMESPACE)
    assert [c["metadata"]["name"] for c in claims] == ["kiln-ws-7-5-3"]
    assert claims[0]["metadata"]["uid"] == claim_uid  # the same volume, not a new one
    assert claims[0]["status"]["phase"] == "Bound"
    assert fake_api.count("POST", "/persistentvolumeclaims") == 2  # second got 409, reused

    # another user on the same project gets a workspace of their own
    other = spawner(settings, runtime, session_id=13, user_id=6)
    await start_until_ready(other, fake_api)
    assert {c["metadata"]["name"] for c in fake_api.list("persistentvolumeclaims", NAMESPACE)} == {
        "kiln-ws-7-5-3",
        "kiln-ws-7-6-3",
    }

    await second.stop(now=True)
    assert await second.delete_workspace() is True
    assert fake_api.get("persistentvolumeclaims", NAMESPACE, "kiln-ws-7-5-3") is None
    assert await second.delete_workspace() is False


async def test_poll_and_reattach(
    settings: Settings, runtime: KubeRuntime, fake_api: FakeKubeAPI
) -> None:
    s = spawner(settings, runtime)
    await start_until_ready(s, fake_api)
    state = s.get_state()
    assert state["pod_name"] == "kiln-ide-11"

    # a restarted broker: a new spawner with the saved state, another client and watch
    other_runtime = KubeRuntime(settings.kube)
    try:
        again = KubernetesSpawner(spawn_spec(), settings=settings, runtime=other_runtime)
        again.load_state(json.loads(json.dumps(state)))
        assert await again.poll() is None
        fake_api.set_pod_failed("kiln-ide-11", exit_code=3)
        await synced(await other_runtime.reflector(), fake_api)
        assert await again.poll() == 3
        await again.stop()
        await eventually(lambda: fake_api.get("pods", NAMESPACE, "kiln-ide-11") is None)
        await synced(await other_runtime.reflector(), fake_api)
        assert await again.poll() == 0  # gone
    finally:
        await other_runtime.close()


async def test_poll_succeeded(
    settings: Settings, runtime: KubeRuntime, fake_api: FakeKubeAPI
) -> None:
    s = spawner(settings, runtime)
    await start_until_ready(s, fake_api)
    fake_api.set_pod_succeeded(s.pod_name)
    await synced(await runtime.reflector(), fake_api)
    assert await s.poll() == 0


async def test_start_fails_when_pod_fails(
    settings: Settings, runtime: KubeRuntime, fake_api: FakeKubeAPI
) -> None:
    s = spawner(settings, runtime)
    task = asyncio.create_task(s.start())
    await eventually(lambda: fake_api.get("pods", NAMESPACE, s.pod_name) is not None)
    fake_api.set_pod_failed(s.pod_name, exit_code=2)
    with pytest.raises(SpawnError, match="ended while starting: develop: exit code 2"):
        await asyncio.wait_for(task, 5)
    await eventually(lambda: fake_api.get("pods", NAMESPACE, s.pod_name) is None)
    assert fake_api.get("secrets", NAMESPACE, s.pod_name) is None
    assert fake_api.get("persistentvolumeclaims", NAMESPACE, s.claim_name) is not None


async def test_start_timeout_names_the_cause(
    settings: Settings, runtime: KubeRuntime, fake_api: FakeKubeAPI
) -> None:
    s = KubernetesSpawner(spawn_spec(), settings=settings, runtime=runtime, start_timeout=0.5)
    task = asyncio.create_task(s.start())
    await eventually(lambda: fake_api.get("pods", NAMESPACE, s.pod_name) is not None)
    fake_api.set_pod_image_pull_backoff(s.pod_name)
    with pytest.raises(SpawnError, match=r"not ready after 0.5s: clone: ImagePullBackOff"):
        await asyncio.wait_for(task, 5)
    await eventually(lambda: fake_api.get("pods", NAMESPACE, s.pod_name) is None)


async def test_start_timeout_unschedulable(
    settings: Settings, runtime: KubeRuntime, fake_api: FakeKubeAPI
) -> None:
    s = KubernetesSpawner(spawn_spec(), settings=settings, runtime=runtime, start_timeout=0.5)
    task = asyncio.create_task(s.start())
    await eventually(lambda: fake_api.get("pods", NAMESPACE, s.pod_name) is not None)
    fake_api.set_pod_unschedulable(s.pod_name, message="0/2 nodes are available")
    with pytest.raises(SpawnError, match="Unschedulable: 0/2 nodes are available"):
        await asyncio.wait_for(task, 5)


async def test_one_watch_shared_by_launcher_and_spawner(
    settings: Settings, runtime: KubeRuntime, fake_api: FakeKubeAPI
) -> None:
    launcher = KubernetesRunLauncher(settings, runtime=runtime)
    await launcher.start()
    spec = LaunchSpec(run_id=1, account_id=7, job_id=1, token="t", api_url="http://x")
    await launcher.launch(spec)
    await start_until_ready(spawner(settings, runtime), fake_api)
    await eventually(lambda: fake_api.open_watches == 1)
    assert fake_api.count("GET", f"/namespaces/{NAMESPACE}/pods", watch="True") == 1
    assert (
        fake_api.count(
            "GET",
            f"/namespaces/{NAMESPACE}/pods",
            labelSelector=("app.kubernetes.io/managed-by=kiln"),
        )
        == 2
    )  # one list + one watch, for both


async def test_from_settings_reads_the_mounted_template(
    settings: Settings, tmp_path: object, fake_api: FakeKubeAPI
) -> None:
    from pathlib import Path

    from server.kube.runtime import close_shared_runtimes

    template = Path(str(tmp_path)) / "develop-pod.yaml"
    template.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  annotations:\n    team: data\n"
        "spec:\n  containers:\n    - name: develop\n"
    )
    s = KubernetesSpawner.from_settings(spawn_spec(), settings, template_path=template)
    try:
        assert s.pod_manifest()["metadata"]["annotations"] == {"team": "data"}
        assert s.runtime is KubernetesRunLauncher.from_settings(settings).runtime  # one per process
        missing = KubernetesSpawner.from_settings(spawn_spec(), settings, template_path=tmp_path)  # type: ignore[arg-type]
        assert missing.pod_template is None
    finally:
        await close_shared_runtimes()
