"""Run workers as Kubernetes pods: one pod per run, followed by one shared watch.

Contract (on top of :mod:`server.launchers.base`):

* Names are deterministic: pod and Secret ``kiln-run-<run_id>``. ``launch`` is
  idempotent: an existing pod (409 AlreadyExists, e.g. after a scheduler
  restart or from a second scheduler) is returned, never duplicated, even
  when it has already finished: a run's worker never runs twice, and the
  monitor learns how the first one ended. The handle is the pod name.
* The run token lives only in the Secret (``stringData.KILN_RUN_TOKEN``) and
  reaches the container through ``valueFrom.secretKeyRef``; the pod spec
  never holds it. Once the pod exists, the Secret's ownerReference points at
  the pod, so Kubernetes garbage-collects the Secret with its pod.
* The pod: restartPolicy Never; activeDeadlineSeconds = timeout + a grace
  (the worker enforces the timeout itself and reports it; the deadline is the
  backstop) and none when there is no timeout; non-root; no service account
  token; labels ``kiln.dev/run-id``, ``kiln.dev/account-id``,
  ``kiln.dev/job-id``, ``kiln.dev/component=run`` and
  ``app.kubernetes.io/managed-by=kiln``; resources, nodeSelector,
  tolerations, imagePullSecrets, service account and extra env from
  :class:`~server.config.KubeSettings`; optionally laid over an operator's
  pod template (``k8s/base/pod-templates/run-pod.yaml``).
* ``check_health`` reads the shared reflector cache (no API call per run),
  and maps the pod to WorkerHealth:

  ====================================================  =======================================
  pod                                                   health
  ====================================================  =======================================
  Pending / Running                                     RUNNING
  waiting ImagePullBackOff/ErrImagePull past grace      EXITED "ImagePullBackOff: <message>"
  waiting InvalidImageName, CreateContainerConfigError  EXITED "<reason>: <message>" (past grace)
  PodScheduled=False Unschedulable past grace           EXITED "Unschedulable: <message>"
  Failed, reason DeadlineExceeded                       EXITED "DeadlineExceeded"
  Failed, reason Evicted                                EXITED "Evicted: <message>"
  container terminated OOMKilled                        EXITED "OOMKilled", exit code 137
  container terminated with exit code N != 0            EXITED "exit code N"
  Succeeded (exit code 0)                               EXITED, exit code 0
  absent (after the first load, confirmed by a GET)     MISSING
  API unreachable and pod not cached                    UNKNOWN
  ====================================================  =======================================

  Graces count from the pod's creationTimestamp. EXITED for a pod that is
  still Pending means "give up on it": the caller fails the run and calls
  ``terminate``.
* The launcher deletes nothing on its own. ``terminate`` deletes a run's pod
  and Secret (the monitor calls it when a worker died or must be stopped);
  pods of runs that ended normally stay, with their logs, until the scheduler
  asks ``known_run_ids()`` which runs still have a pod or Secret and passes
  the final ones to ``cleanup_finished``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiException, CoreV1Api, V1DeleteOptions

from server.config import KubeSettings, Settings
from server.kube import pods as kp
from server.kube.reflector import Pod, PodReflector, read_json
from server.kube.runtime import KubeRuntime, shared_runtime
from server.launchers.base import LaunchSpec, RunLauncher, WorkerHealth, WorkerState

log = logging.getLogger(__name__)

RUN_ID = "kiln.dev/run-id"
JOB_ID = "kiln.dev/job-id"
CONTAINER = "worker"
TOKEN_KEY = "KILN_RUN_TOKEN"
DEADLINE_GRACE_SECONDS = 60
DEFAULT_TEMPLATE = Path("/etc/kiln/pod-templates/run-pod.yaml")

_IMAGE_PULL = ("ImagePullBackOff", "ErrImagePull")
_STUCK_WAITING = ("CreateContainerConfigError", "CreateContainerError")


def pod_name(run_id: int) -> str:
    return f"kiln-run-{run_id}"


class KubernetesRunLauncher(RunLauncher):
    """One pod per run; see the module docstring for the contract."""

    kind = "kubernetes"

    def __init__(
        self,
        settings: Settings,
        *,
        runtime: KubeRuntime | None = None,
        pod_template: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        terminate_grace_seconds: int = 10,
        first_load_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.kube: KubeSettings = settings.kube
        self.namespace = self.kube.namespace
        self.runtime = runtime or shared_runtime(self.kube)
        self.pod_template = pod_template
        self.clock = clock
        self.terminate_grace_seconds = terminate_grace_seconds
        self.first_load_timeout = first_load_timeout
        kp.tolerations(self.kube)  # a bad KILN_K8S_TOLERATIONS fails here, not at first launch

    @classmethod
    def from_settings(
        cls, settings: Settings, template_path: Path = DEFAULT_TEMPLATE
    ) -> KubernetesRunLauncher:
        """The launcher a process builds: shared runtime, template file if mounted."""
        return cls(settings, pod_template=kp.load_pod_template(template_path))

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        reflector = await self.runtime.reflector(self.namespace)
        if not await reflector.wait_first_load(self.first_load_timeout):
            log.warning("pod cache for namespace %s not loaded yet; continuing", self.namespace)

    async def close(self) -> None:
        """Nothing of our own to stop: the runtime (shared) owns the watch."""

    async def _core(self) -> CoreV1Api:
        return CoreV1Api(await self.runtime.api())

    async def _reflector(self) -> PodReflector:
        return await self.runtime.reflector(self.namespace)

    # -- manifests -----------------------------------------------------------

    def labels(self, spec: LaunchSpec) -> dict[str, str]:
        labels = kp.base_labels("run", spec.account_id)
        labels[RUN_ID] = str(spec.run_id)
        labels[JOB_ID] = str(spec.job_id)
        return labels

    def secret_manifest(self, spec: LaunchSpec) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": pod_name(spec.run_id), "labels": self.labels(spec)},
            "type": "Opaque",
            "stringData": {TOKEN_KEY: spec.token},
        }

    def pod_manifest(self, spec: LaunchSpec) -> dict[str, Any]:
        """The pod for ``spec``; the token appears only as a secretKeyRef."""
        name = pod_name(spec.run_id)
        fixed = {
            "KILN_API_URL": spec.api_url or self.settings.api_url,
            "KILN_RUN_ID": str(spec.run_id),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        extra = {k: v for k, v in spec.env.items() if k != TOKEN_KEY}
        env = kp.env_list(self.kube.extra_env, extra, fixed)
        env.append(
            {
                "name": TOKEN_KEY,
                "valueFrom": {"secretKeyRef": {"name": name, "key": TOKEN_KEY}},
            }
        )
        spec_: dict[str, Any] = {
            **kp.pod_spec_common(self.kube),
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": CONTAINER,
                    "image": self.kube.image,
                    "imagePullPolicy": self.kube.image_pull_policy,
                    "command": ["kiln", "worker", "run", str(spec.run_id)],
                    "env": env,
                    "resources": kp.resources(self.kube),
                    "securityContext": kp.container_security(),
                }
            ],
        }
        if spec.timeout_seconds:
            spec_["activeDeadlineSeconds"] = int(spec.timeout_seconds) + DEADLINE_GRACE_SECONDS
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": self.labels(spec)},
            "spec": spec_,
        }
        return kp.merge_template(self.pod_template, pod)

    # -- RunLauncher ---------------------------------------------------------

    async def launch(self, spec: LaunchSpec) -> str:
        core = await self._core()
        name = pod_name(spec.run_id)
        existing = await self._read_pod(core, name)
        if existing is not None:
            # Restarted scheduler, or a second one: that pod is this run's worker.
            await self._own_secret(core, name, existing["metadata"]["uid"])
            return name
        await self._put_secret(core, spec)
        try:
            created = await core.create_namespaced_pod(self.namespace, self.pod_manifest(spec))
            uid = created.metadata.uid
        except ApiException as exc:
            if exc.status != 409:
                raise
            pod = await self._read_pod(core, name)  # lost a race: adopt the winner's pod
            if pod is None:
                raise
            uid = pod["metadata"]["uid"]
        await self._own_secret(core, name, uid)
        return name

    async def terminate(self, run_id: int, handle: str | None) -> None:
        core = await self._core()
        name = handle or pod_name(run_id)
        await kp.ignore_404(
            core.delete_namespaced_pod(
                name,
                self.namespace,
                body=V1DeleteOptions(
                    grace_period_seconds=self.terminate_grace_seconds,
                    propagation_policy="Background",
                ),
            )
        )
        await kp.ignore_404(core.delete_namespaced_secret(pod_name(run_id), self.namespace))

    async def check_health(self, run_id: int, handle: str | None) -> WorkerHealth:
        name = handle or pod_name(run_id)
        reflector = await self._reflector()
        if not await reflector.wait_first_load(self.first_load_timeout):
            return WorkerHealth(WorkerState.UNKNOWN, reason="pod cache not loaded")
        pod = reflector.get(name)
        if pod is None:
            # Absent from the cache: maybe just created and not seen yet. Ask.
            try:
                pod = await self._read_pod(await self._core(), name)
            except (ApiException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                return WorkerHealth(WorkerState.UNKNOWN, reason=f"Kubernetes API: {exc}")
            if pod is None:
                return WorkerHealth(WorkerState.MISSING, reason=f"pod {name} not found")
        return self.health_of(pod)

    # -- cleanup -------------------------------------------------------------

    async def known_run_ids(self) -> set[int]:
        """Runs that still have a pod (cached) or a run Secret in the namespace."""
        ids = {
            int(rid)
            for pod in (await self._reflector()).pods().values()
            if (rid := ((pod.get("metadata") or {}).get("labels") or {}).get(RUN_ID, "")).isdigit()
        }
        return ids | await self._secret_run_ids()

    async def cleanup_finished(self, final_run_ids: Iterable[int]) -> int:
        """Delete the pods and Secrets of runs that are final; return how many runs."""
        wanted = set(final_run_ids)
        if not wanted:
            return 0
        reflector = await self._reflector()
        have = {rid for rid in wanted if reflector.get(pod_name(rid)) is not None}
        have |= wanted & await self._secret_run_ids()
        for rid in sorted(have):
            await self.terminate(rid, None)
        return len(have)

    async def _secret_run_ids(self) -> set[int]:
        core = await self._core()
        resp = await core.list_namespaced_secret(
            self.namespace,
            label_selector=f"{kp.MANAGED_BY}=kiln,{kp.COMPONENT}=run",
            _preload_content=False,
        )
        data = await read_json(resp)
        ids = set()
        for item in data.get("items") or []:
            rid = ((item.get("metadata") or {}).get("labels") or {}).get(RUN_ID, "")
            if rid.isdigit():
                ids.add(int(rid))
        return ids

    # -- pod status → health -------------------------------------------------

    def health_of(self, pod: Pod) -> WorkerHealth:
        """Map one pod (API JSON) to WorkerHealth; see the table in the module docstring."""
        status = pod.get("status") or {}
        phase = status.get("phase")
        reason = status.get("reason")
        message = status.get("message") or ""
        cs = kp.container_status(pod, CONTAINER) or {}
        terminated = (cs.get("state") or {}).get("terminated")
        waiting = (cs.get("state") or {}).get("waiting") or {}
        exit_code = terminated.get("exitCode") if terminated else None

        if phase == "Failed" and reason == "DeadlineExceeded":
            return WorkerHealth(WorkerState.EXITED, exit_code, "DeadlineExceeded")
        if phase == "Failed" and reason == "Evicted":
            return WorkerHealth(WorkerState.EXITED, exit_code, _join("Evicted", message))
        if terminated:
            if terminated.get("reason") == "OOMKilled":
                return WorkerHealth(WorkerState.EXITED, 137, "OOMKilled")
            if exit_code:
                return WorkerHealth(WorkerState.EXITED, exit_code, f"exit code {exit_code}")
            if phase in ("Succeeded", "Failed") or exit_code == 0:
                return WorkerHealth(WorkerState.EXITED, exit_code or 0)
        if phase == "Succeeded":
            return WorkerHealth(WorkerState.EXITED, 0)
        if phase == "Failed":
            return WorkerHealth(WorkerState.EXITED, exit_code, _join(reason or "Failed", message))
        if phase not in ("Pending", "Running"):
            return WorkerHealth(WorkerState.UNKNOWN, reason=f"pod phase {phase!r}")

        age = kp.age_seconds(pod, self.clock())
        w_reason = waiting.get("reason")
        if w_reason in _IMAGE_PULL and age >= self.kube.image_pull_grace_seconds:
            return WorkerHealth(
                WorkerState.EXITED, None, _join("ImagePullBackOff", waiting.get("message"))
            )
        if w_reason == "InvalidImageName" or (
            w_reason in _STUCK_WAITING and age >= self.kube.image_pull_grace_seconds
        ):
            return WorkerHealth(WorkerState.EXITED, None, _join(w_reason, waiting.get("message")))
        scheduled = kp.condition(pod, "PodScheduled")
        if (
            scheduled
            and scheduled.get("status") == "False"
            and scheduled.get("reason") == "Unschedulable"
            and age >= self.kube.unschedulable_grace_seconds
        ):
            return WorkerHealth(
                WorkerState.EXITED, None, _join("Unschedulable", scheduled.get("message"))
            )
        return WorkerHealth(WorkerState.RUNNING)

    # -- helpers -------------------------------------------------------------

    async def _read_pod(self, core: CoreV1Api, name: str) -> Pod | None:
        """GET the pod as API JSON (None on 404), bypassing the cache."""
        try:
            resp = await core.read_namespaced_pod(name, self.namespace, _preload_content=False)
            return await read_json(resp)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def _put_secret(self, core: CoreV1Api, spec: LaunchSpec) -> None:
        """Create the run's Secret, or refresh the token of a leftover one (no pod yet)."""
        manifest = self.secret_manifest(spec)
        try:
            await core.create_namespaced_secret(self.namespace, manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise
            patch = {
                "metadata": {"labels": manifest["metadata"]["labels"]},
                "stringData": {TOKEN_KEY: spec.token},
            }
            await core.patch_namespaced_secret(pod_name(spec.run_id), self.namespace, patch)

    async def _own_secret(self, core: CoreV1Api, name: str, uid: str) -> None:
        """Point the Secret's ownerReference at the pod so it is collected with it."""
        ref = {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}
        try:
            await core.patch_namespaced_secret(
                name, self.namespace, {"metadata": {"ownerReferences": [ref]}}
            )
        except ApiException as exc:
            if exc.status != 404:  # no Secret (deleted meanwhile): nothing to own
                raise


def _join(prefix: str, message: str | None) -> str:
    return f"{prefix}: {message}" if message else prefix
