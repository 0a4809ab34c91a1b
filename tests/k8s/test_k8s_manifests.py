"""The kustomize manifests render and match the official Kubernetes schemas."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from server.config import KubeSettings, Settings, load_settings
from server.kube.pods import load_pod_template
from server.kube.runtime import KubeRuntime
from server.launchers.base import LaunchSpec
from server.launchers.kubernetes import KubernetesRunLauncher
from tests.k8s.fake_apiserver import FakeKubeAPI

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
# the oldest Kubernetes we promise to support, and the newest schema installed
VERSIONS = ["1.31", kubernetes_validate.latest_version()]
ROLE_RESOURCES = {"pods", "pods/log", "secrets", "persistentvolumeclaims", "services"}
TARGETS = ["base", "overlays/dev", "overlays/production"]

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


def render(target: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / target)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module", params=TARGETS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["spec"]["template"] for d in docs if d["kind"] == "Deployment"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_document_validates(rendered: tuple[str, list[dict[str, Any]]], version: str) -> None:
    _, docs = rendered
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_rbac_is_namespaced_and_minimal(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    roles = by_kind(docs, "Role")
    assert set(roles) == {"kiln"}
    for rule in roles["kiln"]["rules"]:
        assert rule["apiGroups"] == [""]
        assert set(rule["resources"]) <= ROLE_RESOURCES
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    granted = {r for rule in roles["kiln"]["rules"] for r in rule["resources"]}
    assert granted == ROLE_RESOURCES
    for binding in by_kind(docs, "RoleBinding").values():
        assert binding["roleRef"]["kind"] == "Role"
        assert all(s.get("namespace") == "kiln" for s in binding["subjects"])
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "kiln", doc["metadata"]["name"]


def test_service_accounts(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    accounts = by_kind(docs, "ServiceAccount")
    assert accounts["kiln-runner"]["automountServiceAccountToken"] is False
    assert accounts["kiln"]["automountServiceAccountToken"] is True
    for template in pod_specs(docs):
        assert template["spec"]["serviceAccountName"] == "kiln"


def test_platform_pods_are_hardened(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    for template in pod_specs(docs):
        spec = template["spec"]
        # the reflector selects managed-by=kiln: platform pods must not be in its cache
        assert "app.kubernetes.io/managed-by" not in template["metadata"]["labels"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        tmp = [v for v in spec["volumes"] if v["name"] == "tmp"]
        assert tmp == [{"name": "tmp", "emptyDir": {}}]
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert {"mountPath": "/tmp", "name": "tmp"} in c["volumeMounts"]
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        main = spec["containers"][0]
        assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_production_overlay() -> None:
    docs = render("overlays/production")
    deployments = by_kind(docs, "Deployment")
    assert deployments["kiln-gateway"]["spec"]["replicas"] == 2
    assert deployments["kiln-scheduler"]["spec"]["replicas"] == 2
    assert deployments["kiln-gateway"]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "gateway"
    ]
    assert "kiln-secrets" not in by_kind(docs, "Secret")  # never overwrite the real one
    assert set(by_kind(docs, "PodDisruptionBudget")) == {"kiln-gateway", "kiln-scheduler"}
    (config,) = [d for d in by_kind(docs, "ConfigMap").values() if "KILN_HOST" in d["data"]]
    data = config["data"]
    assert data["KILN_LAUNCHER"] == "kubernetes" and data["KILN_SPAWNER"] == "kubernetes"
    assert data["KILN_OBJECT_STORE"].startswith("s3://")
    images = {
        c["image"]
        for d in deployments.values()
        for c in d["spec"]["template"]["spec"]["containers"]
        + d["spec"]["template"]["spec"].get("initContainers", [])
    }
    assert images == {data["KILN_K8S_IMAGE"]}  # runs use the platform's own image
    # the settings parse as Kiln reads them
    settings = load_settings({**data, "KILN_DATABASE_URL": "postgresql://k:p@db:5432/kiln"})
    assert settings.launcher == "kubernetes" and settings.kube.namespace == "kiln"
    assert settings.kube.node_selector == {"kiln.dev/pool": "runs"}
    KubernetesRunLauncher(settings, runtime=KubeRuntime(settings.kube))  # tolerations parse
    ingress = by_kind(docs, "Ingress")["kiln"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"


def test_dev_overlay() -> None:
    docs = render("overlays/dev")
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"kiln-gateway"}
    gateway = deployments["kiln-gateway"]
    assert gateway["spec"]["replicas"] == 1
    assert gateway["spec"]["strategy"] == {"type": "Recreate"}
    spec = gateway["spec"]["template"]["spec"]
    assert spec["containers"][0]["args"] == ["up"]
    assert not spec.get("initContainers")
    data_volume = next(v for v in spec["volumes"] if v["name"] == "data")
    assert data_volume == {"name": "data", "persistentVolumeClaim": {"claimName": "kiln-data"}}
    assert not by_kind(docs, "Secret") and not by_kind(docs, "PodDisruptionBudget")
    (config,) = [d for d in by_kind(docs, "ConfigMap").values() if "KILN_HOST" in d["data"]]
    settings = load_settings(config["data"])
    assert settings.embedded and settings.launcher == "local"
    assert settings.api_url == "http://127.0.0.1:8580"


def test_pod_templates_validate_and_merge(tmp_path: Path) -> None:
    docs = render("base")
    (templates,) = [d for d in by_kind(docs, "ConfigMap").values() if "run-pod.yaml" in d["data"]]
    for name in ("run-pod.yaml", "develop-pod.yaml"):
        pod = yaml.safe_load(templates["data"][name])
        for version in VERSIONS:
            kubernetes_validate.validate(pod, version, strict=True)
    template = load_pod_template(K8S / "base/pod-templates/run-pod.yaml")
    settings = Settings(
        data_dir=tmp_path,
        database_url=None,
        object_store=tmp_path.as_uri(),
        s3=None,
        secret_keys=(),
        kube=KubeSettings(),
    )
    launcher = KubernetesRunLauncher(
        settings, runtime=KubeRuntime(settings.kube), pod_template=template
    )
    pod = launcher.pod_manifest(
        LaunchSpec(run_id=1, account_id=1, job_id=1, token="t", api_url="http://x")
    )
    for version in VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)
    assert pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["worker"]


def test_dockerfile_basics() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["kiln"]' in text
    assert 'CMD ["gateway"]' in text
    assert "USER 10001" in text
    assert "COPY examples" in text
    assert "git" in text
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignore


VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def required_permissions(requests: list[tuple[str, str, dict[str, str]]]) -> set[tuple[str, str]]:
    """(resource, verb) pairs that a list of API requests needs, as RBAC names them."""
    needed = set()
    for method, path, query in requests:
        parts = path.split("/")
        if parts[:4] != ["", "api", "v1", "namespaces"] or len(parts) < 6:
            continue
        resource = parts[5] if len(parts) < 8 else f"{parts[5]}/{parts[7]}"
        if method == "GET":
            verb = "get" if len(parts) > 6 else ("watch" if query.get("watch") else "list")
        else:
            verb = VERBS[method]
        needed.add((resource, verb))
    return needed


async def test_role_allows_what_kiln_does(
    settings: Settings, runtime: KubeRuntime, fake_api: FakeKubeAPI
) -> None:
    """Drive the launcher and the spawner through their life cycles; the Role must allow it all."""
    import asyncio

    from ide_broker.spawners.base import SpawnSpec
    from ide_broker.spawners.kubernetes import KubernetesSpawner

    launcher = KubernetesRunLauncher(settings, runtime=runtime)
    await launcher.start()
    await launcher.launch(LaunchSpec(run_id=1, account_id=1, job_id=1, token="t", api_url="x"))
    await launcher.check_health(2, None)
    await launcher.known_run_ids()
    await launcher.cleanup_finished({1})
    session = SpawnSpec(
        session_id=1, account_id=1, user_id=1, project_id=1, secret="s",
        workspace_key="1/1/1", project_source="https://git.example.com/p.git",
    )  # fmt: skip
    spawner = KubernetesSpawner(session, settings=settings, runtime=runtime, start_timeout=0.2)
    task = asyncio.create_task(spawner.start())
    for _ in range(100):
        if fake_api.get("pods", "kiln", spawner.pod_name):
            break
        await asyncio.sleep(0.01)
    fake_api.set_pod_running(spawner.pod_name)
    await task
    await spawner.poll()
    await spawner.stop()
    await spawner.delete_workspace()

    role = by_kind(render("base"), "Role")["kiln"]
    allowed = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    needed = required_permissions(fake_api.requests)
    assert needed - allowed == set()
    assert {("pods", "watch"), ("pods", "create"), ("secrets", "patch")} <= needed
