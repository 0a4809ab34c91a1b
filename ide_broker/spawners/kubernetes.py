"""Develop servers as Kubernetes pods, each on its user's persistent workspace.

Contract (on top of :mod:`ide_broker.spawners.base`):

* Workspace: one PersistentVolumeClaim per (account, user, project),
  ``kiln-ws-<account>-<user>-<project>`` (ReadWriteMany, storage class and
  size from settings), created on first start and reused afterwards (409
  AlreadyExists means "already there"). ``stop`` never deletes it; only
  :meth:`KubernetesSpawner.delete_workspace` does, when the user or the
  project is deleted.
* Session: pod and Secret ``kiln-ide-<session_id>``. The Secret holds the
  session secret (``KILN_DEVELOP_SECRET``), the developer's ``profiles.yml``
  (mounted read-only at ``/kiln/profiles``) and the project source URL (it
  may embed git credentials); none of them appears in clear in the pod spec.
  Its ownerReference points at the pod, so it goes away with the pod.
* An init container fills an empty workspace: ``git clone`` of the project
  source at its default branch (or a copy of a bundled path, committed into
  a fresh repository); a workspace with content is left alone, so a new
  session finds the files as they were left.
* ``start`` creates PVC, Secret and pod and returns ``Endpoint(pod IP, 8765)``
  once the shared reflector shows the pod Ready (readiness probe
  ``GET /healthz``). If the pod ends or is not ready within
  ``start_timeout`` it deletes pod and Secret and raises :class:`SpawnError`
  naming the cause (image pull, unschedulable, exit code, ...).
* ``poll``: None while Pending/Running, else the container's exit code (0 if
  unknown or the pod is gone). ``get_state``/``load_state`` carry the pod
  name so a restarted broker can poll or stop a session it did not start.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiException, CoreV1Api, V1DeleteOptions

from ide_broker.spawners.base import Endpoint, Spawner, SpawnSpec
from server.config import KubeSettings, Settings
from server.kube import pods as kp
from server.kube.reflector import Pod, read_json
from server.kube.runtime import KubeRuntime, shared_runtime

log = logging.getLogger(__name__)

DEVELOP_PORT = 8765
CONTAINER = "develop"
WORKSPACE = "/workspace"
PROFILES_DIR = "/kiln/profiles"
SESSION_ID = "kiln.dev/session-id"
USER_ID = "kiln.dev/user-id"
PROJECT_ID = "kiln.dev/project-id"
DEFAULT_TEMPLATE = Path("/etc/kiln/pod-templates/develop-pod.yaml")

# Runs in the init container. Inputs come from env (never interpolated into
# the script), so a branch or URL cannot inject shell.
CLONE_SCRIPT = """\
set -eu
if [ -n "$(ls -A /workspace | grep -v '^lost+found$' || true)" ]; then
  echo "workspace has content; not cloning"
  exit 0
fi
case "$KILN_PROJECT_SOURCE" in
  /*)
    cp -a "$KILN_PROJECT_SOURCE"/. /workspace/
    if [ ! -d /workspace/.git ]; then
      cd /workspace
      git init -q -b "$KILN_DEFAULT_BRANCH"
      git add -A
      git -c user.name=Kiln -c user.email=kiln@localhost commit -q -m "Import project"
    fi
    ;;
  *)
    git clone --branch "$KILN_DEFAULT_BRANCH" -- "$KILN_PROJECT_SOURCE" /tmp/clone
    cp -a /tmp/clone/. /workspace/
    ;;
esac
echo "workspace ready"
"""


class SpawnError(RuntimeError):
    """The develop pod could not be started; the message says why."""


def workspace_claim_name(account_id: int, user_id: int, project_id: int) -> str:
    return f"kiln-ws-{account_id}-{user_id}-{project_id}"


def session_pod_name(session_id: int) -> str:
    return f"kiln-ide-{session_id}"


async def delete_workspace(
    runtime: KubeRuntime, namespace: str, account_id: int, user_id: int, project_id: int
) -> bool:
    """Delete a workspace PVC (user or project deleted); False if there was none."""
    core = CoreV1Api(await runtime.api())
    name = workspace_claim_name(account_id, user_id, project_id)
    deleted = await kp.ignore_404(core.delete_namespaced_persistent_volume_claim(name, namespace))
    return deleted is not None


class KubernetesSpawner(Spawner):
    """One develop pod per session on a per-(user, project) PVC; see the module docstring."""

    def __init__(
        self,
        spec: SpawnSpec,
        *,
        settings: Settings,
        runtime: KubeRuntime | None = None,
        pod_template: Mapping[str, Any] | None = None,
        start_timeout: float = 300.0,
        access_mode: str = "ReadWriteMany",
    ) -> None:
        super().__init__(spec)
        self.settings = settings
        self.kube: KubeSettings = settings.kube
        self.namespace = self.kube.namespace
        self.runtime = runtime or shared_runtime(self.kube)
        self.pod_template = pod_template
        self.start_timeout = start_timeout
        self.access_mode = access_mode
        self.pod_name = session_pod_name(spec.session_id)
        self.claim_name = workspace_claim_name(spec.account_id, spec.user_id, spec.project_id)

    @classmethod
    def from_settings(
        cls, spec: SpawnSpec, settings: Settings, template_path: Path = DEFAULT_TEMPLATE
    ) -> KubernetesSpawner:
        """The spawner a broker builds: shared runtime, template file if mounted."""
        return cls(spec, settings=settings, pod_template=kp.load_pod_template(template_path))

    # -- manifests -----------------------------------------------------------

    def labels(self) -> dict[str, str]:
        labels = kp.base_labels("develop", self.spec.account_id)
        labels[SESSION_ID] = str(self.spec.session_id)
        labels[USER_ID] = str(self.spec.user_id)
        labels[PROJECT_ID] = str(self.spec.project_id)
        return labels

    def claim_manifest(self) -> dict[str, Any]:
        labels = kp.base_labels("workspace", self.spec.account_id)
        labels[USER_ID] = str(self.spec.user_id)
        labels[PROJECT_ID] = str(self.spec.project_id)
        spec: dict[str, Any] = {
            "accessModes": [self.access_mode],
            "resources": {"requests": {"storage": self.kube.workspace_size}},
        }
        if self.kube.workspace_storage_class:
            spec["storageClassName"] = self.kube.workspace_storage_class
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": self.claim_name, "labels": labels},
            "spec": spec,
        }

    def secret_manifest(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": self.pod_name, "labels": self.labels()},
            "type": "Opaque",
            "stringData": {
                "KILN_DEVELOP_SECRET": self.spec.secret,
                "profiles.yml": self.spec.profiles_yml,
                "KILN_PROJECT_SOURCE": self.spec.project_source,
            },
        }

    def pod_manifest(self) -> dict[str, Any]:
        """The develop pod; secrets appear only as secretKeyRefs and a secret volume."""
        secret_ref = {"name": self.pod_name, "key": "KILN_DEVELOP_SECRET"}
        secret_env = [{"name": "KILN_DEVELOP_SECRET", "valueFrom": {"secretKeyRef": secret_ref}}]
        plain = {
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            # the PVC root may belong to another uid; git must still work in it
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "safe.directory",
            "GIT_CONFIG_VALUE_0": WORKSPACE,
        }
        user_env = {k: v for k, v in self.spec.env.items() if k != "KILN_DEVELOP_SECRET"}
        command = ["kiln", "develop", "--workspace", WORKSPACE]
        if self.spec.project_subdirectory:
            command += ["--project-subdir", self.spec.project_subdirectory]
        command += [
            "--host", "0.0.0.0",
            "--port", str(DEVELOP_PORT),
            "--profiles-dir", PROFILES_DIR,
        ]  # fmt: skip
        clone = {
            "name": "clone",
            "image": self.kube.image,
            "imagePullPolicy": self.kube.image_pull_policy,
            "command": ["sh", "-c", CLONE_SCRIPT],
            "env": [
                {
                    "name": "KILN_PROJECT_SOURCE",
                    "valueFrom": {
                        "secretKeyRef": {"name": self.pod_name, "key": "KILN_PROJECT_SOURCE"}
                    },
                },
                {"name": "KILN_DEFAULT_BRANCH", "value": self.spec.default_branch or "main"},
                {"name": "HOME", "value": "/tmp"},
            ],
            "volumeMounts": [
                {"name": "workspace", "mountPath": WORKSPACE},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
            "resources": {
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"memory": "512Mi"},
            },
            "securityContext": kp.container_security(),
        }
        develop = {
            "name": CONTAINER,
            "image": self.kube.image,
            "imagePullPolicy": self.kube.image_pull_policy,
            "command": command,
            "env": kp.env_list(self.kube.extra_env, user_env, plain) + secret_env,
            "ports": [{"name": "develop", "containerPort": DEVELOP_PORT, "protocol": "TCP"}],
            "readinessProbe": {
                "httpGet": {"path": "/healthz", "port": DEVELOP_PORT},
                "periodSeconds": 2,
                "timeoutSeconds": 2,
                "failureThreshold": 3,
            },
            "volumeMounts": [
                {"name": "workspace", "mountPath": WORKSPACE},
                {"name": "profiles", "mountPath": PROFILES_DIR, "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
            "resources": kp.resources(self.kube),
            "securityContext": kp.container_security(),
        }
        spec = {
            **kp.pod_spec_common(self.kube),
            "restartPolicy": "Never",
            "initContainers": [clone],
            "containers": [develop],
            "volumes": [
                {"name": "workspace", "persistentVolumeClaim": {"claimName": self.claim_name}},
                {
                    "name": "profiles",
                    "secret": {
                        "secretName": self.pod_name,
                        "items": [{"key": "profiles.yml", "path": "profiles.yml"}],
                        "defaultMode": 0o440,
                    },
                },
                {"name": "tmp", "emptyDir": {}},
            ],
        }
        # a big workspace must not be chowned file by file at every start
        spec["securityContext"]["fsGroupChangePolicy"] = "OnRootMismatch"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.pod_name, "labels": self.labels()},
            "spec": spec,
        }
        return kp.merge_template(self.pod_template, pod)

    # -- Spawner -------------------------------------------------------------

    async def start(self) -> Endpoint:
        core = CoreV1Api(await self.runtime.api())
        await self._ensure_claim(core)
        await self._put_secret(core)
        uid = await self._create_pod(core)
        try:
            pod = await self._wait_ready(uid)
        except BaseException:
            await self._delete(core, grace=0)
            raise
        return Endpoint(pod["status"]["podIP"], DEVELOP_PORT)

    async def stop(self, now: bool = False) -> None:
        core = CoreV1Api(await self.runtime.api())
        await self._delete(core, grace=0 if now else 15)

    async def poll(self) -> int | None:
        reflector = await self.runtime.reflector(self.namespace)
        await reflector.wait_first_load(10.0)
        pod = reflector.get(self.pod_name)
        if pod is None:
            try:
                pod = await self._read_pod(CoreV1Api(await self.runtime.api()))
            except (ApiException, aiohttp.ClientError, OSError, TimeoutError):
                return None  # cannot tell right now; the next poll will
            if pod is None:
                return 0
        return exit_status(pod)

    def get_state(self) -> dict[str, Any]:
        return {"pod_name": self.pod_name, "namespace": self.namespace, "pvc": self.claim_name}

    def load_state(self, state: dict[str, Any]) -> None:
        self.pod_name = state.get("pod_name") or self.pod_name
        self.namespace = state.get("namespace") or self.namespace
        self.claim_name = state.get("pvc") or self.claim_name

    async def delete_workspace(self) -> bool:
        """Delete this user's workspace for this project (not part of stop)."""
        return await delete_workspace(
            self.runtime,
            self.namespace,
            self.spec.account_id,
            self.spec.user_id,
            self.spec.project_id,
        )

    # -- helpers -------------------------------------------------------------

    async def _ensure_claim(self, core: CoreV1Api) -> None:
        try:
            await core.create_namespaced_persistent_volume_claim(
                self.namespace, self.claim_manifest()
            )
        except ApiException as exc:
            if exc.status != 409:
                why = kp.status_message(exc)
                raise SpawnError(f"workspace claim {self.claim_name}: {why}") from exc
            # already there: the workspace outlives sessions

    async def _put_secret(self, core: CoreV1Api) -> None:
        manifest = self.secret_manifest()
        try:
            await core.create_namespaced_secret(self.namespace, manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise
            await core.patch_namespaced_secret(
                self.pod_name, self.namespace, {"stringData": manifest["stringData"]}
            )

    async def _create_pod(self, core: CoreV1Api) -> str:
        """Create the pod (adopting a live one of the same name); return its uid."""
        try:
            created = await core.create_namespaced_pod(self.namespace, self.pod_manifest())
            uid: str = created.metadata.uid
        except ApiException as exc:
            if exc.status != 409:
                why = kp.status_message(exc)
                raise SpawnError(f"develop pod {self.pod_name}: {why}") from exc
            pod = await self._read_pod(core)
            if pod is None:
                raise SpawnError(f"develop pod {self.pod_name}: conflict, then gone") from exc
            if exit_status(pod) is not None or pod["metadata"].get("deletionTimestamp"):
                raise SpawnError(
                    f"develop pod {self.pod_name} from an earlier start still exists and has "
                    "ended; stop the session and start a new one"
                ) from exc
            uid = pod["metadata"]["uid"]
        ref = {"apiVersion": "v1", "kind": "Pod", "name": self.pod_name, "uid": uid}
        await kp.ignore_404(
            core.patch_namespaced_secret(
                self.pod_name, self.namespace, {"metadata": {"ownerReferences": [ref]}}
            )
        )
        return uid

    async def _wait_ready(self, uid: str) -> Pod:
        reflector = await self.runtime.reflector(self.namespace)
        seen = False

        def settled(pod: Pod | None) -> bool:
            nonlocal seen
            if pod is None or pod["metadata"].get("uid") != uid:
                return seen  # gone after we saw it; before that, not in the cache yet
            seen = True
            return kp.is_ready(pod) or exit_status(pod) is not None

        try:
            pod = await reflector.wait_for(self.pod_name, settled, self.start_timeout)
        except TimeoutError:
            why = diagnose(reflector.get(self.pod_name))
            raise SpawnError(
                f"develop pod {self.pod_name} not ready after {self.start_timeout:g}s: {why}"
            ) from None
        if pod is None or pod["metadata"].get("uid") != uid:
            raise SpawnError(f"develop pod {self.pod_name} was deleted while starting")
        if not kp.is_ready(pod):
            raise SpawnError(f"develop pod {self.pod_name} ended while starting: {diagnose(pod)}")
        return pod

    async def _read_pod(self, core: CoreV1Api) -> Pod | None:
        try:
            resp = await core.read_namespaced_pod(
                self.pod_name, self.namespace, _preload_content=False
            )
            return await read_json(resp)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def _delete(self, core: CoreV1Api, grace: int) -> None:
        await kp.ignore_404(
            core.delete_namespaced_pod(
                self.pod_name,
                self.namespace,
                body=V1DeleteOptions(grace_period_seconds=grace, propagation_policy="Background"),
            )
        )
        await kp.ignore_404(core.delete_namespaced_secret(self.pod_name, self.namespace))


def exit_status(pod: Pod) -> int | None:
    """None while the pod may still serve; else the develop container's exit code."""
    phase = (pod.get("status") or {}).get("phase")
    if phase in (None, "Pending", "Running", "Unknown"):
        return None
    if phase == "Succeeded":
        return 0
    cs = kp.container_status(pod, CONTAINER) or {}
    terminated = (cs.get("state") or {}).get("terminated") or {}
    code = terminated.get("exitCode")
    return int(code) if code else 1


def diagnose(pod: Pod | None) -> str:
    """Why a develop pod is not serving, in one line, from its status."""
    if pod is None:
        return "pod not found"
    status = pod.get("status") or {}
    if status.get("reason"):
        return f"{status['reason']}: {status.get('message') or ''}".rstrip(": ")
    scheduled = kp.condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        return f"{scheduled.get('reason') or 'Unscheduled'}: {scheduled.get('message') or ''}"
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason") not in (None, "PodInitializing"):
            w = state["waiting"]
            return f"{cs['name']}: {w.get('reason')}: {w.get('message') or ''}".rstrip(": ")
        term = state.get("terminated")
        if term and term.get("exitCode"):
            return f"{cs['name']}: exit code {term['exitCode']} ({term.get('reason') or ''})"
    return f"phase {status.get('phase') or 'unknown'}, not ready"
