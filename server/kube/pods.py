"""Pod-building and pod-reading helpers shared by the launcher and the spawner.

Pods are built and read as plain JSON dicts in the API's camelCase shape
(what the reflector caches), not as kubernetes-asyncio models: one shape for
what we send and what we read back, and no per-event model deserialization.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.client import ApiException

from server.config import KubeSettings

MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "kiln.dev/component"
ACCOUNT_ID = "kiln.dev/account-id"
RUNNER_UID = 10001  # the image's non-root user (see Dockerfile)

# Lists that a pod template and a generated pod merge by key instead of replacing.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}


def base_labels(component: str, account_id: int) -> dict[str, str]:
    """Labels every Kiln-created object carries (the reflector selects on MANAGED_BY)."""
    return {
        MANAGED_BY: "kiln",
        "app.kubernetes.io/name": "kiln",
        COMPONENT: component,
        ACCOUNT_ID: str(account_id),
    }


def parse_time(value: str | None) -> datetime | None:
    """An API timestamp ("2025-01-02T03:04:05Z" or with an offset) as aware UTC."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age_seconds(pod: Mapping[str, Any], now: float) -> float:
    """Seconds since the pod was created, by the caller's clock (epoch seconds)."""
    created = parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
    return 0.0 if created is None else now - created.timestamp()


def condition(pod: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def container_status(pod: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == name:
            return status
    return None


def is_ready(pod: Mapping[str, Any] | None) -> bool:
    """Ready condition True and an IP to connect to."""
    if not pod:
        return False
    cond = condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True" and (pod.get("status") or {}).get("podIP"))


def resources(kube: KubeSettings) -> dict[str, Any]:
    requests = {"cpu": kube.run_cpu_request, "memory": kube.run_memory_request}
    limits = {"memory": kube.run_memory_limit}
    if kube.run_cpu_limit:
        limits["cpu"] = kube.run_cpu_limit
    return {"requests": requests, "limits": {k: v for k, v in limits.items() if v}}


def tolerations(kube: KubeSettings) -> list[dict[str, Any]]:
    """KILN_K8S_TOLERATIONS parsed; ValueError names the setting when it is not a JSON list."""
    if not kube.tolerations_json.strip():
        return []
    try:
        value = json.loads(kube.tolerations_json)
    except ValueError as exc:
        raise ValueError(f"KILN_K8S_TOLERATIONS: invalid JSON: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError("KILN_K8S_TOLERATIONS: expected a JSON list of toleration objects")
    return value


def pod_spec_common(kube: KubeSettings) -> dict[str, Any]:
    """Spec fields shared by run and develop pods, all from settings."""
    spec: dict[str, Any] = {
        "serviceAccountName": kube.service_account,
        "automountServiceAccountToken": False,  # runners never talk to the Kubernetes API
        "enableServiceLinks": False,  # no service env vars leaking into dbt's environment
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "fsGroup": RUNNER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if kube.node_selector:
        spec["nodeSelector"] = dict(kube.node_selector)
    tols = tolerations(kube)
    if tols:
        spec["tolerations"] = tols
    if kube.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in kube.image_pull_secrets]
    return spec


def container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def env_list(*layers: Mapping[str, str]) -> list[dict[str, Any]]:
    """Plain env vars; a later layer wins over an earlier one for the same name."""
    merged: dict[str, str] = {}
    for layer in layers:
        merged.update(layer)
    return [{"name": k, "value": v} for k, v in merged.items()]


def merge_template(template: Mapping[str, Any] | None, pod: Mapping[str, Any]) -> dict[str, Any]:
    """``pod`` laid over an operator's pod template (strategic-merge style).

    The template supplies what Kiln does not set (annotations, affinity,
    extra volumes or sidecars, priorityClassName); every field Kiln sets wins.
    Lists of named things (containers, env, volumes, ...) merge by key.
    """
    if not template:
        return copy.deepcopy(dict(pod))
    return _merge(copy.deepcopy(dict(template)), pod)


def _merge(base: Any, over: Any, key: str | None = None) -> Any:
    if isinstance(base, dict) and isinstance(over, Mapping):
        for k, v in over.items():
            base[k] = _merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return base
    merge_key = _MERGE_KEYS.get(key or "")
    if merge_key and isinstance(base, list) and isinstance(over, list):
        out = list(base)
        index = {item.get(merge_key): i for i, item in enumerate(out) if isinstance(item, dict)}
        for item in over:
            i = index.get(item.get(merge_key)) if isinstance(item, dict) else None
            if i is None:
                out.append(copy.deepcopy(item))
            else:
                out[i] = _merge(out[i], item)
        return out
    return copy.deepcopy(over)


def load_pod_template(path: str | Path) -> dict[str, Any] | None:
    """A Pod manifest (YAML) to merge generated pods into; None when the file is absent."""
    p = Path(path)
    if not p.is_file():
        return None
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict) or data.get("kind", "Pod") != "Pod":
        raise ValueError(f"{p}: expected a Pod manifest")
    return data


async def ignore_404(call: Awaitable[Any]) -> Any | None:
    """Await a delete/read; None when the object is already gone."""
    try:
        return await call
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def status_message(exc: ApiException) -> str:
    """The ``message`` of the Status object in an ApiException, else its reason."""
    try:
        body = json.loads(exc.body or "")
        return str(body.get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)
