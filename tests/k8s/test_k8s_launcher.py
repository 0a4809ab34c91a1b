"""KubernetesRunLauncher against the fake API server, over HTTP."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import kubernetes_validate
import pytest

from server.config import Settings
from server.kube.runtime import KubeRuntime
from server.launchers.base import LaunchSpec, WorkerHealth, WorkerState
from server.launchers.kubernetes import KubernetesRunLauncher, pod_name
from tests.k8s.conftest import NAMESPACE, eventually, make_settings, synced
from tests.k8s.fake_apiserver import FakeKubeAPI

TOKEN = "kiln-run-token-5f3a9c1e7d"


def spec(run_id: int = 42, **changes: object) -> LaunchSpec:
    values: dict[str, object] = {
        "run_id": run_id,
        "account_id": 7,
        "job_id": 3,
        "token": TOKEN,
        "api_url": "http://kiln-gateway.kiln.svc:8580",
        "timeout_seconds": 3600,
        "env": {"KILN_EXTRA": "1"},
    }
    values.update(changes)
    return LaunchSpec(**values)  # type: ignore[arg-type]


class Clock:
    """Wall time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def launcher(
    settings: Settings, runtime: KubeRuntime, clock: Clock
) -> AsyncIterator[KubernetesRunLauncher]:
    launcher = KubernetesRunLauncher(settings, runtime=runtime, clock=clock)
    await launcher.start()
    try:
        yield launcher
    finally:
        await launcher.close()


async def health(launcher: KubernetesRunLauncher, fake: FakeKubeAPI, run_id: int) -> WorkerHealth:
    await synced(await launcher.runtime.reflector(), fake)
    return await launcher.check_health(run_id, pod_name(run_id))


async def test_launch_creates_pod_and_secret(
    launcher: KubernetesRunLauncher, fake_api: FakeKubeAPI
) -> None:
    handle = await launcher.launch(spec())
    assert handle == "kiln-run-42"
    pod = fake_api.get("pods", NAMESPACE, handle)
    secret = fake_api.get("secrets", NAMESPACE, handle)
    assert pod is not None and secret is not None

    # the token is only in the Secret, never in clear in the pod
    assert TOKEN not in json.dumps(pod)
    assert base64.b64decode(secret["data"]["KILN_RUN_TOKEN"]).decode() == TOKEN
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["KILN_RUN_TOKEN"] == {
        "name": "KILN_RUN_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "kiln-run-42", "key": "KILN_RUN_TOKEN"}},
    }
    assert env["KILN_API_URL"]["value"] == "http://kiln-gateway.kiln.svc:8580"
    assert env["KILN_RUN_ID"]["value"] == "42"
    assert env["KILN_EXTRA"]["value"] == "1"
    assert env["DBT_PROFILES_DIR"]["value"] == "/tmp/profiles"  # extra_env from settings
    assert container["command"] == ["kiln", "worker", "run", "42"]

    # the Secret is owned by the pod, so Kubernetes collects it with the pod
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "kiln-run-42", "uid": pod["metadata"]["uid"]}
    ]

    labels = pod["metadata"]["labels"]
    assert labels["kiln.dev/run-id"] == "42"
    assert labels["kiln.dev/account-id"] == "7"
    assert labels["kiln.dev/job-id"] == "3"
    assert labels["kiln.dev/component"] == "run"
    assert labels["app.kubernetes.io/managed-by"] == "kiln"
    assert secret["metadata"]["labels"]["kiln.dev/run-id"] == "42"
    assert secret["metadata"]["labels"]["kiln.dev/component"] == "run"

    podspec = pod["spec"]
    assert podspec["restartPolicy"] == "Never"
    assert podspec["activeDeadlineSeconds"] == 3600 + 60
    assert podspec["serviceAccountName"] == "kiln-runner"
    assert podspec["automountServiceAccountToken"] is False
    assert podspec["securityContext"]["runAsNonRoot"] is True
    assert podspec["nodeSelector"] == {"kiln.dev/pool": "runs"}
    assert {"key": "kiln.dev/runs", "operator": "Exists", "effect": "NoSchedule"} in podspec[
        "tolerations"
    ]
    assert podspec["imagePullSecrets"] == [{"name": "regcred"}]
    assert container["image"] == "ghcr.io/kiln-platform/kiln:1.2.3"
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"memory": "2Gi"},
    }
    assert not any("serviceaccount" in m["mountPath"] for m in container.get("volumeMounts", []))


async def test_manifest_validates_against_schema(launcher: KubernetesRunLauncher) -> None:
    for version in ("1.31", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(launcher.pod_manifest(spec()), version, strict=True)
        kubernetes_validate.validate(launcher.secret_manifest(spec()), version, strict=True)


async def test_no_timeout_means_no_deadline(
    launcher: KubernetesRunLauncher, fake_api: FakeKubeAPI
) -> None:
    for timeout in (0, None):
        handle = await launcher.launch(
            spec(run_id=50 if timeout == 0 else 51, timeout_seconds=timeout)
        )
        pod = fake_api.get("pods", NAMESPACE, handle)
        assert pod is not None and "activeDeadlineSeconds" not in pod["spec"]


async def test_spec_env_cannot_override_the_token(launcher: KubernetesRunLauncher) -> None:
    manifest = launcher.pod_manifest(spec(env={"KILN_RUN_TOKEN": "x", "KILN_RUN_ID": "9"}))
    env = manifest["spec"]["containers"][0]["env"]
    assert [e for e in env if e["name"] == "KILN_RUN_TOKEN"] == [
        {
            "name": "KILN_RUN_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "kiln-run-42", "key": "KILN_RUN_TOKEN"}},
        }
    ]
    assert [e["value"] for e in env if e["name"] == "KILN_RUN_ID"] == ["42"]


async def test_launch_twice_and_after_restart_creates_one_pod(
    launcher: KubernetesRunLauncher,
    fake_api: FakeKubeAPI,
    settings: Settings,
) -> None:
    first = await launcher.launch(spec())
    uid = fake_api.get("pods", NAMESPACE, first)["metadata"]["uid"]  # type: ignore[index]
    assert await launcher.launch(spec()) == first

    # a second scheduler process (or this one after a restart): its own client and watch
    other_runtime = KubeRuntime(settings.kube)
    try:
        other = KubernetesRunLauncher(settings, runtime=other_runtime)
        await other.start()
        assert await other.launch(spec(token="a-newer-token")) == first
    finally:
        await other_runtime.close()

    pods = fake_api.list("pods", NAMESPACE)
    assert [p["metadata"]["name"] for p in pods] == ["kiln-run-42"]
    assert pods[0]["metadata"]["uid"] == uid
    assert fake_api.count("POST", f"/namespaces/{NAMESPACE}/pods") == 1
    # the running worker's Secret was left alone
    secret = fake_api.get("secrets", NAMESPACE, first)
    assert base64.b64decode(secret["data"]["KILN_RUN_TOKEN"]).decode() == TOKEN  # type: ignore[index]


async def test_leftover_secret_gets_the_new_token(
    launcher: KubernetesRunLauncher, fake_api: FakeKubeAPI
) -> None:
    """A crash between Secret and pod leaves a Secret; the next launch refreshes it."""
    fake_api.create("secrets", NAMESPACE, launcher.secret_manifest(spec(token="stale")))
    await launcher.launch(spec())
    secret = fake_api.get("secrets", NAMESPACE, "kiln-run-42")
    assert base64.b64decode(secret["data"]["KILN_RUN_TOKEN"]).decode() == TOKEN  # type: ignore[index]
    assert secret["metadata"]["ownerReferences"][0]["name"] == "kiln-run-42"  # type: ignore[index]


async def test_terminate_deletes_pod_and_secret(
    launcher: KubernetesRunLauncher, fake_api: FakeKubeAPI
) -> None:
    handle = await launcher.launch(spec())
    fake_api.set_pod_running(handle)
    await launcher.terminate(42, handle)
    await eventually(lambda: fake_api.get("pods", NAMESPACE, handle) is None)
    assert fake_api.get("secrets", NAMESPACE, handle) is None
    await launcher.terminate(42, handle)  # idempotent
    assert (await health(launcher, fake_api, 42)).state is WorkerState.MISSING


async def test_deleting_the_pod_collects_the_secret(
    launcher: KubernetesRunLauncher, fake_api: FakeKubeAPI
) -> None:
    handle = await launcher.launch(spec())
    fake_api.delete("pods", NAMESPACE, handle)
    await eventually(lambda: fake_api.get("secrets", NAMESPACE, handle) is None)


HEALTH_CASES = [
    ("pending", lambda f, n: None, WorkerHealth(WorkerState.RUNNING)),
    ("scheduled", lambda f, n: f.schedule_pod(n), WorkerHealth(WorkerState.RUNNING)),
    ("running", lambda f, n: f.set_pod_running(n), WorkerHealth(WorkerState.RUNNING)),
    ("succeeded", lambda f, n: f.set_pod_succeeded(n), WorkerHealth(WorkerState.EXITED, 0)),
    (
        "exit code",
        lambda f, n: f.set_pod_failed(n, exit_code=2),
        WorkerHealth(WorkerState.EXITED, 2, "exit code 2"),
    ),
    (
        "oom",
        lambda f, n: f.set_pod_oom_killed(n),
        WorkerHealth(WorkerState.EXITED, 137, "OOMKilled"),
    ),
    (
        "deadline",
        lambda f, n: f.set_pod_deadline_exceeded(n),
        WorkerHealth(WorkerState.EXITED, 137, "DeadlineExceeded"),
    ),
    (
        "evicted",
        lambda f, n: f.set_pod_evicted(n, message="The node was low on resource: memory."),
        WorkerHealth(WorkerState.EXITED, 137, "Evicted: The node was low on resource: memory."),
    ),
]


@pytest.mark.parametrize(
    ("case", "transition", "expected"), HEALTH_CASES, ids=[c[0] for c in HEALTH_CASES]
)
async def test_health_mapping(
    launcher: KubernetesRunLauncher,
    fake_api: FakeKubeAPI,
    case: str,
    transition: object,
    expected: WorkerHealth,
) -> None:
    handle = await launcher.launch(spec())
    transition(fake_api, handle)  # type: ignore[operator]
    assert await health(launcher, fake_api, 42) == expected


async def test_image_pull_backoff_after_grace(
    launcher: KubernetesRunLauncher, fake_api: FakeKubeAPI, clock: Clock
) -> None:
    handle = await launcher.launch(spec())
    fake_api.set_pod_image_pull_backoff(handle, err_image_pull=True)
    assert (await health(launcher, fake_api, 42)).state is WorkerState.RUNNING  # within grace
    fake_api.set_pod_image_pull_backoff(handle)
    clock.offset = 121  # default grace 120 s, counted from creationTimestamp
    got = await health(launcher, fake_api, 42)
    assert got == WorkerHealth(
        WorkerState.EXITED,
        None,
        'ImagePullBackOff: Back-off pulling image "ghcr.io/kiln-platform/kiln:1.2.3"',
    )


async def test_err_image_pull_also_counts(
    tmp_path: Path, kubeconfig_file: Path, fake_api: FakeKubeAPI
) -> None:
    settings = make_settings(tmp_path, kubeconfig_file, image_pull_grace_seconds=0)
    runtime = KubeRuntime(settings.kube)
    try:
        launcher = KubernetesRunLauncher(settings, runtime=runtime)
        handle = await launcher.launch(spec())
        fake_api.set_pod_image_pull_backoff(handle, err_image_pull=True)
        got = await health(launcher, fake_api, 42)
        assert got.state is WorkerState.EXITED
        assert got.reason is not None and got.reason.startswith("ImagePullBackOff: rpc error")
    finally:
        await runtime.close()


async def test_unschedulable_after_grace(
    launcher: KubernetesRunLauncher, fake_api: FakeKubeAPI, clock: Clock
) -> None:
    handle = await launcher.launch(spec())
    fake_api.set_pod_unschedulable(handle, message="0/3 nodes are available: 3 Insufficient cpu.")
    assert (await health(launcher, fake_api, 42)).state is WorkerState.RUNNING
    clock.offset = 301
    assert await health(launcher, fake_api, 42) == WorkerHealth(
        WorkerState.EXITED, None, "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
    )


async def test_missing_and_not_yet_cached(
    launcher: KubernetesRunLauncher, fake_api: FakeKubeAPI
) -> None:
    got = await launcher.check_health(99, None)
    assert got.state is WorkerState.MISSING
    # created behind the cache's back and checked before the watch delivers it: a GET
    # confirms it exists, so it is not reported missing
    fake_api.create("pods", NAMESPACE, launcher.pod_manifest(spec(run_id=100)))
    assert (await launcher.check_health(100, None)).state is WorkerState.RUNNING


async def test_unknown_when_api_unreachable(
    launcher: KubernetesRunLauncher, fake_api: FakeKubeAPI
) -> None:
    await fake_api.close()
    got = await launcher.check_health(5, None)
    assert got.state is WorkerState.UNKNOWN


async def test_cleanup_finished(launcher: KubernetesRunLauncher, fake_api: FakeKubeAPI) -> None:
    for run_id in (1, 2, 3):
        await launcher.launch(spec(run_id=run_id))
    fake_api.set_pod_succeeded("kiln-run-1")
    fake_api.set_pod_failed("kiln-run-2", exit_code=1)
    # an orphan Secret: the launcher died between Secret and pod
    fake_api.create("secrets", NAMESPACE, launcher.secret_manifest(spec(run_id=4)))
    await synced(await launcher.runtime.reflector(), fake_api)
    assert await launcher.known_run_ids() == {1, 2, 3, 4}

    assert await launcher.cleanup_finished({1, 2, 4, 77}) == 3
    await eventually(lambda: len(fake_api.list("pods", NAMESPACE)) == 1)
    assert [p["metadata"]["name"] for p in fake_api.list("pods", NAMESPACE)] == ["kiln-run-3"]
    assert [s["metadata"]["name"] for s in fake_api.list("secrets", NAMESPACE)] == ["kiln-run-3"]
    await synced(await launcher.runtime.reflector(), fake_api)
    assert await launcher.known_run_ids() == {3}


async def test_bad_tolerations_fail_early(tmp_path: Path, kubeconfig_file: Path) -> None:
    settings = make_settings(tmp_path, kubeconfig_file, tolerations_json='{"key": "x"}')
    with pytest.raises(ValueError, match="KILN_K8S_TOLERATIONS"):
        KubernetesRunLauncher(settings, runtime=KubeRuntime(settings.kube))


async def test_pod_template_is_merged(
    settings: Settings, runtime: KubeRuntime, fake_api: FakeKubeAPI
) -> None:
    template = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}},
        "spec": {
            "priorityClassName": "kiln-runs",
            "restartPolicy": "Always",  # Kiln's own value wins
            "containers": [{"name": "worker", "env": [{"name": "TZ", "value": "UTC"}]}],
        },
    }
    launcher = KubernetesRunLauncher(settings, runtime=runtime, pod_template=template)
    handle = await launcher.launch(spec())
    pod = fake_api.get("pods", NAMESPACE, handle)
    assert pod is not None
    assert pod["metadata"]["annotations"] == template["metadata"]["annotations"]
    assert pod["spec"]["priorityClassName"] == "kiln-runs"
    assert pod["spec"]["restartPolicy"] == "Never"
    names = [e["name"] for e in pod["spec"]["containers"][0]["env"]]
    assert "TZ" in names and "KILN_RUN_TOKEN" in names


async def test_finished_pod_is_adopted_not_relaunched(
    launcher: KubernetesRunLauncher, fake_api: FakeKubeAPI
) -> None:
    handle = await launcher.launch(spec())
    fake_api.set_pod_failed(handle, exit_code=3)
    assert await launcher.launch(spec()) == handle
    assert fake_api.count("POST", f"/namespaces/{NAMESPACE}/pods") == 1
    assert await health(launcher, fake_api, 42) == WorkerHealth(
        WorkerState.EXITED, 3, "exit code 3"
    )
