"""A faithful fake of the Kubernetes API server (core/v1 subset) for tests.

No kube-apiserver can run on the development machines, so Kiln's Kubernetes
code is tested against this: a real aiohttp server on a real socket that
kubernetes-asyncio reaches over HTTP with bearer-token auth, through a
generated kubeconfig, exactly as it would a cluster.

What it implements, as the real API server does:

* Paths: ``/version``, ``/api``, ``/api/v1``, and for pods, secrets,
  persistentvolumeclaims, services and configmaps
  ``/api/v1/namespaces/{ns}/{resource}[/{name}[/status]]``, plus
  ``/pods/{name}/log``.
* Verbs: create (201; 409 AlreadyExists; 422 Invalid against the official
  schema, strict: unknown fields are rejected), get (404 NotFound), list with
  ``labelSelector`` (``=``, ``==``, ``!=``, ``in``, ``notin``, exists,
  ``!``exists) and simple ``fieldSelector``, replace (409 Conflict on a stale
  resourceVersion), patch (JSON patch, JSON merge patch, strategic merge patch
  with the API's merge keys), delete (200 with the object; pods on a node are
  deleted gracefully: deletionTimestamp first, then gone), every error as a
  proper ``Status`` object.
* Server behaviour: uid, resourceVersion (one global counter),
  creationTimestamp, generateName, pod defaults (the fields the API server and
  its admission plugins add), Secret ``stringData`` folded into base64
  ``data``, garbage collection of dependents whose ownerReferences all point
  at deleted objects, Service cluster IPs.
* Watch: ``?watch=true`` streams chunked JSON lines ``{"type", "object"}``
  (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR) with resourceVersion semantics:
  unset/"0" starts with synthetic ADDED events for the current state, N
  replays history after N; label-selector transitions become ADDED/DELETED;
  ``allowWatchBookmarks``; ``timeoutSeconds`` ends the stream cleanly.

Test controls (all synchronous, so a sequence of them is atomic with respect
to the clients): :meth:`expire_history` (watches from an older
resourceVersion get an ERROR 410 event, or HTTP 410 with ``gone_as_http``),
:meth:`drop_watches` (abort the connections mid-stream),
:meth:`send_bookmarks`, and pod status transitions shaped like the kubelet's
(:meth:`schedule_pod`, :meth:`set_pod_running`, :meth:`set_pod_succeeded`,
:meth:`set_pod_failed`, :meth:`set_pod_oom_killed`,
:meth:`set_pod_image_pull_backoff`, :meth:`set_pod_evicted`,
:meth:`set_pod_deadline_exceeded`, :meth:`set_pod_unschedulable`).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jsonschema
from aiohttp import web
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

SCHEMA_VERSION = "1.31"
Obj = dict[str, Any]

RESOURCES: dict[str, str] = {  # plural → kind
    "pods": "Pod",
    "secrets": "Secret",
    "persistentvolumeclaims": "PersistentVolumeClaim",
    "services": "Service",
    "configmaps": "ConfigMap",
}
SHORT = {"pods": "po", "services": "svc", "persistentvolumeclaims": "pvc", "configmaps": "cm"}
STATUS_SUBRESOURCE = {"pods", "persistentvolumeclaims", "services"}

# Strategic-merge keys (x-kubernetes-patch-merge-key in the OpenAPI schema).
MERGE_KEYS: dict[str, str] = {
    "ownerReferences": "uid",
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "conditions": "type",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
}
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@functools.cache
def schema_validator(kind: str) -> jsonschema.protocols.Validator:
    """The official (strict) schema of a core/v1 kind, as kubernetes-validate ships it."""
    folder = f"kubernetes-json-schema/v{SCHEMA_VERSION}.0-local-strict"
    schema = schema_contents(f"{folder}/{kind.lower()}-v1.json", SCHEMA_VERSION)
    definitions = schema_contents(f"{folder}/_definitions.json", SCHEMA_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_bool(value: str | None) -> bool:
    """Go's strconv.ParseBool, which the API server uses for query flags ("True" included)."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def status_obj(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A metav1.Status, the body of every API error (and of ERROR watch events)."""
    out: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        out["details"] = details
    return out


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.status = status_obj(code, reason, message, details)


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource}
    )


# -- label selectors -----------------------------------------------------------

_REQ = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<nkey>[\w./-]+)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|=|!=)\s*(?P<val>[\w.-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<vals>[^)]*)\))?)\s*(?:,|$)"
)


def parse_selector(text: str) -> Callable[[dict[str, str]], bool]:
    """Kubernetes label selector syntax → predicate over a labels dict."""
    reqs: list[Callable[[dict[str, str]], bool]] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        m = _REQ.match(text, pos)
        if not m or m.end() == pos:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {text[pos:]!r}")
        pos = m.end()
        if m["not"]:
            k = m["nkey"]
            reqs.append(lambda labels, k=k: k not in labels)
        elif m["op"]:
            k, v = m["key"], m["val"]
            if m["op"] == "!=":
                reqs.append(lambda labels, k=k, v=v: labels.get(k) != v)
            else:
                reqs.append(lambda labels, k=k, v=v: labels.get(k) == v)
        elif m["setop"]:
            k = m["key"]
            vals = {x.strip() for x in m["vals"].split(",") if x.strip()}
            if m["setop"] == "in":
                reqs.append(lambda labels, k=k, vals=vals: labels.get(k) in vals)
            else:
                reqs.append(lambda labels, k=k, vals=vals: labels.get(k) not in vals)
        else:
            k = m["key"]
            reqs.append(lambda labels, k=k: k in labels)
    return lambda labels: all(r(labels) for r in reqs)


def parse_field_selector(text: str) -> Callable[[Obj], bool]:
    reqs: list[Callable[[Obj], bool]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", part)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector: {part!r}")
        path, op, want = m.groups()

        def get(obj: Obj, path: str = path) -> Any:
            cur: Any = obj
            for p in path.split("."):
                cur = cur.get(p) if isinstance(cur, dict) else None
            return "" if cur is None else str(cur)

        if op == "!=":
            reqs.append(lambda o, g=get, w=want: g(o) != w)
        else:
            reqs.append(lambda o, g=get, w=want: g(o) == w)
    return lambda obj: all(r(obj) for r in reqs)


# -- patches -------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def strategic_merge(target: Any, patch: Any, key: str | None = None) -> Any:
    """Strategic merge patch: like a merge patch, but keyed lists merge by key."""
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        out = dict(target) if isinstance(target, dict) else {}
        for k, v in patch.items():
            if k.startswith("$"):
                continue
            if v is None:
                out.pop(k, None)
            else:
                out[k] = strategic_merge(out.get(k), v, k)
        return out
    merge_key = MERGE_KEYS.get(key or "")
    if isinstance(patch, list) and merge_key and isinstance(target, list):
        out_list = [copy.deepcopy(x) for x in target]
        for item in patch:
            if not isinstance(item, dict):
                out_list.append(copy.deepcopy(item))
                continue
            idx = next(
                (i for i, x in enumerate(out_list) if x.get(merge_key) == item.get(merge_key)),
                None,
            )
            if item.get("$patch") == "delete":
                if idx is not None:
                    out_list.pop(idx)
            elif idx is None:
                out_list.append({k: v for k, v in item.items() if k != "$patch"})
            else:
                out_list[idx] = strategic_merge(out_list[idx], item)
        return out_list
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc: Any, ops: list[Obj]) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, test)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent: Any = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        kind = op["op"]
        try:
            if kind == "test":
                cur = parent[int(last)] if isinstance(parent, list) else parent[last]
                if cur != op["value"]:
                    raise ApiError(422, "Invalid", f"test failed at {op['path']}")
            elif kind == "remove":
                if isinstance(parent, list):
                    parent.pop(int(last))
                else:
                    del parent[last]
            elif kind in ("add", "replace"):
                if isinstance(parent, list):
                    if last == "-":
                        parent.append(op["value"])
                    elif kind == "add":
                        parent.insert(int(last), op["value"])
                    else:
                        parent[int(last)] = op["value"]
                else:
                    if kind == "replace" and last not in parent:
                        raise KeyError(last)
                    parent[last] = op["value"]
            else:
                raise ApiError(422, "Invalid", f"unsupported JSON patch op {kind!r}")
        except (KeyError, IndexError, ValueError) as exc:
            raise ApiError(
                422, "Invalid", f"the server rejected our request: {kind} {op['path']}: {exc}"
            ) from None
    return doc


# -- watches -------------------------------------------------------------------

_DROP = object()


@dataclass(eq=False)  # identity semantics: kept in a set
class _Watch:
    resource: str
    namespace: str
    match: Callable[[Obj], bool]
    bookmarks: bool
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)


@dataclass
class _Event:
    rv: int
    resource: str
    namespace: str
    type: str
    obj: Obj
    prev: Obj | None


class FakeKubeAPI:
    """The fake API server; see the module docstring."""

    def __init__(
        self,
        *,
        token: str | None = None,
        gone_as_http: bool = False,
        bookmark_interval: float | None = None,
        pod_termination_delay: float = 0.0,
        gc_delay: float = 0.0,
        default_storage_class: str | None = "standard",
    ) -> None:
        self.token = token or secrets.token_urlsafe(16)
        self.gone_as_http = gone_as_http
        self.bookmark_interval = bookmark_interval
        self.pod_termination_delay = pod_termination_delay
        self.gc_delay = gc_delay
        self.default_storage_class = default_storage_class
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {r: {} for r in RESOURCES}
        self.history: list[_Event] = []
        self.compacted = 0  # watches from a resourceVersion below this get 410
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.pod_logs: dict[tuple[str, str], str] = {}
        self._rv = 1
        self._watches: set[_Watch] = set()
        self._ip = 10
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- server lifecycle ------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/version", self._version)
        app.router.add_get("/version/", self._version)  # VersionApi asks with the slash
        app.router.add_get("/api", self._api_versions)
        app.router.add_get("/api/", self._api_versions)
        app.router.add_get("/api/v1", self._api_resources)
        app.router.add_get("/api/v1/", self._api_resources)
        base = "/api/v1/namespaces/{ns}/{resource}"
        app.router.add_route("GET", base, self._collection_get)
        app.router.add_route("POST", base, self._create)
        app.router.add_route("GET", base + "/{name}", self._get)
        app.router.add_route("PUT", base + "/{name}", self._replace)
        app.router.add_route("PATCH", base + "/{name}", self._patch)
        app.router.add_route("DELETE", base + "/{name}", self._delete)
        app.router.add_route("GET", base + "/{name}/status", self._get)
        app.router.add_route("PUT", base + "/{name}/status", self._replace)
        app.router.add_route("PATCH", base + "/{name}/status", self._patch)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", self._log)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def kubeconfig(self, namespace: str = "kiln", context: str = "fake") -> Obj:
        """A kubeconfig dict pointing at this server, with bearer-token auth."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "kiln", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": "fake", "user": "kiln", "namespace": namespace},
                }
            ],
            "current-context": context,
        }

    # -- test controls -----------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def expire_history(self) -> None:
        """Compact: resuming a watch from any older resourceVersion now gets 410 Gone."""
        self.compacted = self._rv
        self.history.clear()

    def drop_watches(self) -> None:
        """Abort every open watch connection mid-stream (clients see a broken stream)."""
        for w in list(self._watches):
            w.queue.put_nowait(_DROP)

    def send_bookmarks(self) -> None:
        """A BOOKMARK on every watch that allowed them, at the current resourceVersion."""
        for w in list(self._watches):
            if w.bookmarks:
                w.queue.put_nowait(self._bookmark(w.resource))

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    def count(self, method: str, path_suffix: str, **query: str) -> int:
        """How many requests matched (e.g. count("GET", "/pods", watch="true"))."""
        n = 0
        for m, path, q in self.requests:
            if m == method and path.endswith(path_suffix):
                if all(q.get(k) == v for k, v in query.items()):
                    n += 1
        return n

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        obj = self.objects[resource].get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: str, namespace: str | None = None) -> list[Obj]:
        return [
            copy.deepcopy(o)
            for (ns, _), o in sorted(self.objects[resource].items())
            if namespace is None or ns == namespace
        ]

    def create(self, resource: str, namespace: str, body: Obj) -> Obj:
        """Create as a client would (defaults, validation, events) without HTTP."""
        return copy.deepcopy(self._do_create(resource, namespace, copy.deepcopy(body)))

    def delete(self, resource: str, namespace: str, name: str, grace: int | None = 0) -> None:
        self._do_delete(resource, namespace, name, grace)

    # pod status transitions, shaped as the kubelet and scheduler write them

    def schedule_pod(self, name: str, namespace: str = "kiln", node: str = "node-1") -> Obj:
        """Bound to a node, containers being created (phase Pending)."""

        def change(pod: Obj) -> None:
            pod["spec"]["nodeName"] = node
            st = pod["status"]
            st.update({"hostIP": "172.18.0.2", "hostIPs": [{"ip": "172.18.0.2"}]})
            st["startTime"] = st.get("startTime") or now_rfc3339()
            st["phase"] = "Pending"
            has_init = bool(pod["spec"].get("initContainers"))
            st["conditions"] = self._conditions(
                pod,
                ready_to_start=False,
                initialized=not has_init,
                ready=False,
            )
            if has_init:
                st["initContainerStatuses"] = [
                    _cstatus(c, {"waiting": {"reason": "PodInitializing"}})
                    for c in pod["spec"]["initContainers"]
                ]
                waiting = {"waiting": {"reason": "PodInitializing"}}
            else:
                waiting = {"waiting": {"reason": "ContainerCreating"}}
            st["containerStatuses"] = [
                _cstatus(c, copy.deepcopy(waiting)) for c in pod["spec"]["containers"]
            ]

        return self._set_pod(name, namespace, change)

    def set_pod_unschedulable(
        self,
        name: str,
        namespace: str = "kiln",
        message: str = "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes "
        "are available: 3 No preemption victims found for incoming pod.",
    ) -> Obj:
        def change(pod: Obj) -> None:
            pod["status"]["phase"] = "Pending"
            pod["status"]["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": now_rfc3339(),
                    "reason": "Unschedulable",
                    "message": message,
                }
            ]

        return self._set_pod(name, namespace, change)

    def set_pod_image_pull_backoff(
        self, name: str, namespace: str = "kiln", err_image_pull: bool = False
    ) -> Obj:
        """The first container cannot pull its image (ErrImagePull, then ImagePullBackOff)."""
        self._ensure_scheduled(name, namespace)

        def change(pod: Obj) -> None:
            st = pod["status"]
            key = (
                "initContainerStatuses"
                if pod["spec"].get("initContainers")
                else "containerStatuses"
            )
            first = st[key][0]
            image = first["image"]
            if err_image_pull:
                waiting = {
                    "reason": "ErrImagePull",
                    "message": f"rpc error: code = NotFound desc = failed to pull and unpack image "
                    f'"{image}": failed to resolve reference "{image}": {image}: not found',
                }
            else:
                waiting = {
                    "reason": "ImagePullBackOff",
                    "message": f'Back-off pulling image "{image}"',
                }
            first["state"] = {"waiting": waiting}

        return self._set_pod(name, namespace, change)

    def set_pod_running(self, name: str, namespace: str = "kiln", ready: bool = True) -> Obj:
        self._ensure_scheduled(name, namespace)

        def change(pod: Obj) -> None:
            st = pod["status"]
            st["phase"] = "Running"
            st["podIP"] = st.get("podIP") or self._next_ip()
            st["podIPs"] = [{"ip": st["podIP"]}]
            started = now_rfc3339()
            if pod["spec"].get("initContainers"):
                st["initContainerStatuses"] = [
                    _cstatus(c, _terminated(0, "Completed", started), started_=False)
                    for c in pod["spec"]["initContainers"]
                ]
            st["containerStatuses"] = [
                _cstatus(c, {"running": {"startedAt": started}}, ready=ready, started_=True)
                for c in pod["spec"]["containers"]
            ]
            st["conditions"] = self._conditions(pod, True, True, ready)

        return self._set_pod(name, namespace, change)

    def set_pod_succeeded(self, name: str, namespace: str = "kiln") -> Obj:
        return self._finish(name, namespace, "Succeeded", 0, "Completed")

    def set_pod_failed(
        self, name: str, namespace: str = "kiln", exit_code: int = 1, reason: str = "Error"
    ) -> Obj:
        return self._finish(name, namespace, "Failed", exit_code, reason)

    def set_pod_oom_killed(self, name: str, namespace: str = "kiln") -> Obj:
        return self._finish(name, namespace, "Failed", 137, "OOMKilled")

    def set_pod_deadline_exceeded(self, name: str, namespace: str = "kiln") -> Obj:
        return self._finish(
            name,
            namespace,
            "Failed",
            137,
            "Error",
            pod_reason="DeadlineExceeded",
            pod_message="Pod was active on the node longer than the specified deadline",
        )

    def set_pod_evicted(
        self,
        name: str,
        namespace: str = "kiln",
        message: str = "The node was low on resource: memory. Threshold quantity: 100Mi, "
        "available: 42Mi. Container worker was using 1900Mi, request is 512Mi, has larger "
        "consumption of memory.",
    ) -> Obj:
        return self._finish(
            name,
            namespace,
            "Failed",
            137,
            "Error",
            pod_reason="Evicted",
            pod_message=message,
            disruption=("TerminationByKubelet", message),
        )

    def bind_claim(self, name: str, namespace: str = "kiln") -> Obj:
        """The provisioner bound the PVC (phase Bound, capacity, volumeName)."""
        key = (namespace, name)
        prev = self.objects["persistentvolumeclaims"].get(key)
        if prev is None:
            raise KeyError(name)
        pvc = copy.deepcopy(prev)
        pvc["spec"]["volumeName"] = f"pvc-{pvc['metadata']['uid']}"
        pvc["status"] = {
            "phase": "Bound",
            "accessModes": pvc["spec"].get("accessModes", []),
            "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
        }
        return self._commit("persistentvolumeclaims", namespace, "MODIFIED", pvc, prev)

    # -- internals: storage and events ---------------------------------------------

    def _commit(self, resource: str, ns: str, kind: str, obj: Obj, prev: Obj | None) -> Obj:
        """Apply one change: new resourceVersion, store, history, fan out to watches."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = (ns, obj["metadata"]["name"])
        if kind == "DELETED":
            self.objects[resource].pop(key, None)
        else:
            self.objects[resource][key] = obj
        ev = _Event(self._rv, resource, ns, kind, copy.deepcopy(obj), copy.deepcopy(prev))
        self.history.append(ev)
        for w in list(self._watches):
            out = self._translate(ev, w)
            if out is not None:
                w.queue.put_nowait(out)
        return obj

    def _translate(self, ev: _Event, w: _Watch) -> Obj | None:
        """The event as watch ``w`` sees it (label-selector transitions included)."""
        if ev.resource != w.resource or ev.namespace != w.namespace:
            return None
        now_m = w.match(ev.obj)
        kind = ev.type
        if kind == "MODIFIED":
            was_m = ev.prev is not None and w.match(ev.prev)
            if now_m and not was_m:
                kind = "ADDED"
            elif was_m and not now_m:
                kind = "DELETED"
            elif not now_m:
                return None
        elif not now_m:
            return None
        return {"type": kind, "object": self._with_kind(ev.resource, ev.obj)}

    def _with_kind(self, resource: str, obj: Obj) -> Obj:
        return {"kind": RESOURCES[resource], "apiVersion": "v1", **copy.deepcopy(obj)}

    def _bookmark(self, resource: str) -> Obj:
        # exactly what kube-apiserver sends: an empty object but for resourceVersion
        obj: Obj = {
            "kind": RESOURCES[resource],
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self._rv), "creationTimestamp": None},
        }
        if resource == "pods":
            obj["spec"] = {"containers": None}
            obj["status"] = {}
        return {"type": "BOOKMARK", "object": obj}

    def _matcher(self, query: dict[str, str]) -> Callable[[Obj], bool]:
        labels = parse_selector(query.get("labelSelector", ""))
        fields = parse_field_selector(query.get("fieldSelector", ""))
        return lambda o: labels((o.get("metadata") or {}).get("labels") or {}) and fields(o)

    def _next_ip(self) -> str:
        self._ip += 1
        return f"10.244.{self._ip // 250}.{self._ip % 250 + 2}"

    # -- internals: verbs -------------------------------------------------------------

    def _do_create(self, resource: str, ns: str, body: Obj) -> Obj:
        kind = RESOURCES[resource]
        if body.get("kind", kind) != kind or body.get("apiVersion", "v1") != "v1":
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({body.get('apiVersion')}) does not match the "
                f"expected API version (v1) or kind ({body.get('kind')} is not {kind})",
            )
        meta = body.setdefault("metadata", {})
        if meta.get("namespace", ns) != ns:
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on "
                "the request",
            )
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name") or ""
        self._validate(resource, body, name)
        if (ns, name) in self.objects[resource]:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{resource} "{name}" already exists',
                {"name": name, "kind": resource},
            )
        obj = copy.deepcopy(body)
        obj.pop("kind", None)
        obj.pop("apiVersion", None)
        obj["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
        obj["metadata"].pop("resourceVersion", None)
        getattr(self, f"_default_{resource}")(obj)
        return self._commit(resource, ns, "ADDED", obj, None)

    def _validate(self, resource: str, body: Obj, name: str) -> None:
        kind = RESOURCES[resource]
        causes: list[Obj] = []
        if not name:
            causes.append(
                _cause("FieldValueRequired", "name or generateName is required", "metadata.name")
            )
        elif not _DNS1123.match(name) or len(name) > 253:
            causes.append(
                _cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{name}": a lowercase '
                    "RFC 1123 subdomain must consist of lower case alphanumeric "
                    "characters, '-' or '.'",
                    "metadata.name",
                )
            )
        for k, v in ((body.get("metadata") or {}).get("labels") or {}).items():
            if not isinstance(v, str) or len(v) > 63 or not _LABEL_VALUE.match(v):
                causes.append(
                    _cause("FieldValueInvalid", f"Invalid value: {v!r}", f"metadata.labels[{k}]")
                )
        if kind == "Pod":
            spec = body.get("spec") or {}
            for group in ("initContainers", "containers"):
                for i, c in enumerate(spec.get(group) or []):
                    if not c.get("image"):
                        causes.append(
                            _cause(
                                "FieldValueRequired", "Required value", f"spec.{group}[{i}].image"
                            )
                        )
        full = {"apiVersion": "v1", "kind": kind, **body}
        error = jsonschema.exceptions.best_match(schema_validator(kind).iter_errors(full))
        if error is not None:
            path = ".".join(str(p) for p in error.absolute_path) or "<root>"
            causes.append(_cause("FieldValueInvalid", error.message, path))
        if causes:
            message = f'{kind} "{name}" is invalid: ' + ", ".join(
                f"{c['field']}: {c['message']}" for c in causes
            )
            raise ApiError(422, "Invalid", message, {"name": name, "kind": kind, "causes": causes})

    def _default_pods(self, pod: Obj) -> None:
        spec = pod.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("securityContext", {})
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", "default")
        spec["serviceAccount"] = spec["serviceAccountName"]
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        tols = spec.setdefault("tolerations", [])
        for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if not any(t.get("key") == taint for t in tols):
                tols.append(
                    {
                        "key": taint,
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 300,
                    }
                )
        projected = None
        if spec.get("automountServiceAccountToken") is not False:
            projected = f"kube-api-access-{secrets.token_hex(3)[:5]}"
            spec.setdefault("volumes", []).append(
                {
                    "name": projected,
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                        }
                                    ]
                                }
                            },
                        ],
                    },
                }
            )
        for group in ("initContainers", "containers"):
            for c in spec.get(group) or []:
                image = c.get("image", "")
                tag = image.rsplit("/", 1)[-1]
                latest = ":" not in tag or tag.endswith(":latest")
                c.setdefault(
                    "imagePullPolicy", "Always" if latest and "@" not in tag else "IfNotPresent"
                )
                c.setdefault("terminationMessagePath", "/dev/termination-log")
                c.setdefault("terminationMessagePolicy", "File")
                c.setdefault("resources", {})
                for p in c.get("ports") or []:
                    p.setdefault("protocol", "TCP")
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if probe in c:
                        pr = c[probe]
                        for k, v in (
                            ("timeoutSeconds", 1),
                            ("periodSeconds", 10),
                            ("successThreshold", 1),
                            ("failureThreshold", 3),
                        ):
                            pr.setdefault(k, v)
                        if "httpGet" in pr:
                            pr["httpGet"].setdefault("scheme", "HTTP")
                if projected:
                    c.setdefault("volumeMounts", []).append(
                        {
                            "name": projected,
                            "readOnly": True,
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        }
                    )
        for v in spec.get("volumes") or []:
            if "secret" in v:
                v["secret"].setdefault("defaultMode", 420)
            if "emptyDir" in v and v["emptyDir"] is None:
                v["emptyDir"] = {}
        pod["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}

    def _default_secrets(self, secret: Obj) -> None:
        secret.setdefault("type", "Opaque")
        _fold_string_data(secret)

    def _default_persistentvolumeclaims(self, pvc: Obj) -> None:
        spec = pvc.setdefault("spec", {})
        spec.setdefault("volumeMode", "Filesystem")
        if "storageClassName" not in spec and self.default_storage_class:
            spec["storageClassName"] = self.default_storage_class
        pvc["status"] = {"phase": "Pending"}

    def _default_services(self, svc: Obj) -> None:
        spec = svc.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec.get("clusterIP") != "None":
            self._ip += 1
            spec["clusterIP"] = f"10.96.{self._ip // 250}.{self._ip % 250 + 2}"
        spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
        svc["status"] = {"loadBalancer": {}}

    def _default_configmaps(self, cm: Obj) -> None:
        return None

    def _lookup(self, resource: str, ns: str, name: str) -> Obj:
        obj = self.objects[resource].get((ns, name))
        if obj is None:
            raise not_found(resource, name)
        return obj

    def _update(self, resource: str, ns: str, name: str, new: Obj, status_only: bool) -> Obj:
        """Store an updated object as the API would: immutable fields kept, no-ops skipped."""
        prev = self._lookup(resource, ns, name)
        new = copy.deepcopy(new)
        new.pop("kind", None)
        new.pop("apiVersion", None)
        meta = new.setdefault("metadata", {})
        for k in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if k in prev["metadata"]:
                meta[k] = prev["metadata"][k]
            else:
                meta.pop(k, None)
        if status_only:
            merged = copy.deepcopy(prev)
            merged["status"] = new.get("status", {})
            new = merged
        elif resource in STATUS_SUBRESOURCE:
            new["status"] = copy.deepcopy(prev.get("status", {}))
        if resource == "secrets":
            _fold_string_data(new)
        if resource == "pods" and not status_only:
            _check_pod_update(prev, new)
        full = {k: v for k, v in new.items() if k != "status"} if resource == "pods" else new
        check = copy.deepcopy(full)
        for k in ("uid", "resourceVersion", "creationTimestamp", "namespace"):
            check["metadata"].pop(k, None)
        self._validate(resource, check, name)
        meta["resourceVersion"] = prev["metadata"]["resourceVersion"]
        if new == prev:
            return prev  # a no-op update does not bump the resourceVersion
        return self._commit(resource, ns, "MODIFIED", new, copy.deepcopy(prev))

    def _do_delete(self, resource: str, ns: str, name: str, grace: int | None) -> Obj:
        obj = self._lookup(resource, ns, name)
        if resource == "pods":
            if grace is None:
                grace = obj["spec"].get("terminationGracePeriodSeconds", 30)
            on_node = bool(obj["spec"].get("nodeName"))
            finished = obj["status"].get("phase") in ("Succeeded", "Failed")
            if grace > 0 and on_node and not finished:
                if obj["metadata"].get("deletionTimestamp"):
                    return obj
                prev = copy.deepcopy(obj)
                marked = copy.deepcopy(obj)
                marked["metadata"]["deletionTimestamp"] = now_rfc3339()
                marked["metadata"]["deletionGracePeriodSeconds"] = grace
                out = self._commit(resource, ns, "MODIFIED", marked, prev)
                loop = asyncio.get_running_loop()
                loop.call_later(
                    min(grace, self.pod_termination_delay), self._remove, resource, ns, name
                )
                return copy.deepcopy(out)
        return copy.deepcopy(self._remove(resource, ns, name))

    def _remove(self, resource: str, ns: str, name: str) -> Obj | None:
        obj = self.objects[resource].get((ns, name))
        if obj is None:
            return None
        gone = copy.deepcopy(obj)
        out = self._commit(resource, ns, "DELETED", gone, copy.deepcopy(obj))
        uid = obj["metadata"]["uid"]
        try:
            loop = asyncio.get_running_loop()
            loop.call_later(self.gc_delay, self._collect_garbage, ns, uid)
        except RuntimeError:
            self._collect_garbage(ns, uid)
        return out

    def _collect_garbage(self, ns: str, owner_uid: str) -> None:
        """Delete dependents whose owners are all gone (background propagation)."""
        live = {o["metadata"]["uid"] for r in self.objects.values() for o in r.values()}
        for resource, objs in self.objects.items():
            for (ons, name), obj in list(objs.items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if ons != ns or not any(r.get("uid") == owner_uid for r in refs):
                    continue
                if not any(r.get("uid") in live for r in refs):
                    self._do_delete(resource, ns, name, 0)

    def _set_pod(self, name: str, ns: str, change: Callable[[Obj], None]) -> Obj:
        prev = self.objects["pods"].get((ns, name))
        if prev is None:
            raise KeyError(f"no pod {ns}/{name}")
        pod = copy.deepcopy(prev)
        change(pod)
        return copy.deepcopy(self._commit("pods", ns, "MODIFIED", pod, prev))

    def _ensure_scheduled(self, name: str, ns: str) -> None:
        pod = self.objects["pods"].get((ns, name))
        if pod is not None and not pod["spec"].get("nodeName"):
            self.schedule_pod(name, ns)

    def _conditions(
        self,
        pod: Obj,
        ready_to_start: bool,
        initialized: bool,
        ready: bool,
        reason: str | None = None,
    ) -> list[Obj]:
        ts = now_rfc3339()
        names = [c["name"] for c in pod["spec"]["containers"]]
        inits = [c["name"] for c in pod["spec"].get("initContainers") or []]

        def cond(kind: str, ok: bool, why: str | None = None, msg: str | None = None) -> Obj:
            c: Obj = {
                "type": kind,
                "status": "True" if ok else "False",
                "lastProbeTime": None,
                "lastTransitionTime": ts,
            }
            if not ok and why:
                c["reason"] = why
                if msg:
                    c["message"] = msg
            return c

        unready = reason or "ContainersNotReady"
        msg = None if reason else f"containers with unready status: [{' '.join(names)}]"
        return [
            cond("PodReadyToStartContainers", ready_to_start),
            cond(
                "Initialized",
                initialized,
                reason or "ContainersNotInitialized",
                None if reason else f"containers with incomplete status: [{' '.join(inits)}]",
            ),
            cond("Ready", ready, unready, msg),
            cond("ContainersReady", ready, unready, msg),
            cond("PodScheduled", True),
        ]

    def _finish(
        self,
        name: str,
        ns: str,
        phase: str,
        exit_code: int,
        reason: str,
        pod_reason: str | None = None,
        pod_message: str | None = None,
        disruption: tuple[str, str] | None = None,
    ) -> Obj:
        self._ensure_scheduled(name, ns)

        def change(pod: Obj) -> None:
            st = pod["status"]
            st["phase"] = phase
            if pod_reason:
                st["reason"] = pod_reason
                st["message"] = pod_message
            st["podIP"] = st.get("podIP") or self._next_ip()
            st["podIPs"] = [{"ip": st["podIP"]}]
            started = now_rfc3339()
            if pod["spec"].get("initContainers"):
                st["initContainerStatuses"] = [
                    _cstatus(c, _terminated(0, "Completed", started))
                    for c in pod["spec"]["initContainers"]
                ]
            st["containerStatuses"] = [
                _cstatus(c, _terminated(exit_code, reason, started))
                for c in pod["spec"]["containers"]
            ]
            why = "PodCompleted" if phase == "Succeeded" else "PodFailed"
            st["conditions"] = self._conditions(pod, False, True, False, reason=why)
            if disruption:
                st["conditions"].insert(
                    0,
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "lastProbeTime": None,
                        "lastTransitionTime": started,
                        "reason": disruption[0],
                        "message": disruption[1],
                    },
                )

        return self._set_pod(name, ns, change)

    # -- HTTP handlers ----------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _json(status_obj(401, "Unauthorized", "Unauthorized"), 401)
        try:
            return await handler(request)
        except ApiError as exc:
            return _json(exc.status, exc.status["code"])
        except web.HTTPNotFound:
            return _json(
                status_obj(404, "NotFound", "the server could not find the requested resource"),
                404,
            )

    async def _version(self, request: web.Request) -> web.Response:
        return _json(
            {
                "major": "1",
                "minor": "31",
                "gitVersion": "v1.31.0-fake",
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2024-08-13T07:28:49Z",
                "goVersion": "go1.22.5",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        )

    async def _api_versions(self, request: web.Request) -> web.Response:
        return _json(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}
                ],
            }
        )

    async def _api_resources(self, request: web.Request) -> web.Response:
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        items = []
        for plural, kind in RESOURCES.items():
            entry: Obj = {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": True,
                "kind": kind,
                "verbs": verbs,
            }
            if plural in SHORT:
                entry["shortNames"] = [SHORT[plural]]
            items.append(entry)
            if plural in STATUS_SUBRESOURCE:
                items.append(
                    {
                        "name": f"{plural}/status",
                        "singularName": "",
                        "namespaced": True,
                        "kind": kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        items.append(
            {
                "name": "pods/log",
                "singularName": "",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get"],
            }
        )
        return _json({"kind": "APIResourceList", "groupVersion": "v1", "resources": items})

    def _resource(self, request: web.Request) -> str:
        resource = request.match_info["resource"]
        if resource not in RESOURCES:
            raise web.HTTPNotFound()
        return resource

    async def _body(self, request: web.Request) -> Any:
        try:
            return json.loads(await request.read() or b"null")
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"invalid JSON body: {exc}") from None

    async def _collection_get(self, request: web.Request) -> web.StreamResponse:
        resource = self._resource(request)
        ns = request.match_info["ns"]
        query = dict(request.query)
        if parse_bool(query.get("watch")):
            return await self._watch(request, resource, ns, query)
        match = self._matcher(query)
        items = [
            copy.deepcopy(o)
            for (ons, _), o in sorted(self.objects[resource].items())
            if ons == ns and match(o)
        ]
        return _json(
            {
                "kind": f"{RESOURCES[resource]}List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }
        )

    async def _create(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "expected an object")
        obj = self._do_create(resource, request.match_info["ns"], body)
        return _json(self._with_kind(resource, obj), 201)

    async def _get(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        obj = self._lookup(resource, request.match_info["ns"], request.match_info["name"])
        return _json(self._with_kind(resource, obj))

    async def _replace(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        ns, name = request.match_info["ns"], request.match_info["name"]
        body = await self._body(request)
        prev = self._lookup(resource, ns, name)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != prev["metadata"]["resourceVersion"]:
            raise _conflict(resource, name)
        status_only = request.path.endswith("/status")
        obj = self._update(resource, ns, name, body, status_only)
        return _json(self._with_kind(resource, obj))

    async def _patch(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        ns, name = request.match_info["ns"], request.match_info["name"]
        patch = await self._body(request)
        prev = self._with_kind(resource, self._lookup(resource, ns, name))
        ctype = request.content_type
        if ctype == "application/json-patch+json":
            if not isinstance(patch, list):
                raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
            new = json_patch(prev, patch)
        elif ctype == "application/merge-patch+json":
            new = merge_patch(prev, patch)
        elif ctype == "application/strategic-merge-patch+json":
            new = strategic_merge(prev, patch)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown "
                f"format - accepted media types include: application/json-patch+json, "
                f"application/merge-patch+json, application/strategic-merge-patch+json "
                f"(got {ctype})",
            )
        rv = (
            (patch.get("metadata") or {}).get("resourceVersion")
            if isinstance(patch, dict)
            else None
        )
        if rv and rv != prev["metadata"]["resourceVersion"]:
            raise _conflict(resource, name)
        obj = self._update(resource, ns, name, new, request.path.endswith("/status"))
        return _json(self._with_kind(resource, obj))

    async def _delete(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        ns, name = request.match_info["ns"], request.match_info["name"]
        body = await self._body(request) or {}
        grace = body.get("gracePeriodSeconds") if isinstance(body, dict) else None
        if "gracePeriodSeconds" in request.query:
            grace = int(request.query["gracePeriodSeconds"])
        obj = self._do_delete(resource, ns, name, grace)
        return _json(self._with_kind(resource, obj))

    async def _log(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        pod = self._lookup("pods", ns, name)
        if pod["status"].get("phase") == "Pending":
            container = pod["spec"]["containers"][0]["name"]
            raise ApiError(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating',
            )
        return web.Response(text=self.pod_logs.get((ns, name), ""), content_type="text/plain")

    async def _watch(
        self, request: web.Request, resource: str, ns: str, query: dict[str, str]
    ) -> web.StreamResponse:
        match = self._matcher(query)
        w = _Watch(resource, ns, match, parse_bool(query.get("allowWatchBookmarks")))
        since = query.get("resourceVersion") or ""
        initial: list[Obj] = []
        end_after_initial = False
        # Computing the initial events and registering the watch happen with no
        # await in between, so no change can fall into a gap or be sent twice.
        if since in ("", "0"):
            for (ons, _), obj in sorted(
                self.objects[resource].items(),
                key=lambda kv: int(kv[1]["metadata"]["resourceVersion"]),
            ):
                if ons == ns and match(obj):
                    initial.append({"type": "ADDED", "object": self._with_kind(resource, obj)})
        else:
            try:
                start = int(since)
            except ValueError:
                raise ApiError(400, "BadRequest", f"invalid resourceVersion {since!r}") from None
            if start < self.compacted:
                msg = f"too old resource version: {start} ({self.compacted})"
                if self.gone_as_http:
                    raise ApiError(410, "Expired", msg)
                initial.append({"type": "ERROR", "object": status_obj(410, "Expired", msg)})
                end_after_initial = True
            else:
                for ev in self.history:
                    if ev.rv > start:
                        out = self._translate(ev, w)
                        if out is not None:
                            initial.append(out)
        if not end_after_initial:
            self._watches.add(w)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            for item in initial:
                await resp.write(json.dumps(item).encode() + b"\n")
            if end_after_initial:
                return resp
            timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
            loop = asyncio.get_running_loop()
            next_bookmark = loop.time() + (self.bookmark_interval or float("inf"))
            try:
                async with asyncio.timeout(timeout):
                    while True:
                        try:
                            item = await asyncio.wait_for(w.queue.get(), 0.1)
                        except TimeoutError:
                            if request.transport is None or request.transport.is_closing():
                                return resp  # the client went away
                            if w.bookmarks and loop.time() >= next_bookmark:
                                next_bookmark = loop.time() + (self.bookmark_interval or 0)
                                item = self._bookmark(resource)
                                await resp.write(json.dumps(item).encode() + b"\n")
                            continue
                        if item is _DROP:
                            if request.transport is not None:
                                request.transport.abort()
                            return resp
                        await resp.write(json.dumps(item).encode() + b"\n")
            except TimeoutError:
                pass  # timeoutSeconds: end the stream cleanly, as the real server does
            return resp
        except (ConnectionResetError, asyncio.CancelledError):
            return resp
        finally:
            self._watches.discard(w)


# -- helpers ---------------------------------------------------------------------


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def _cause(reason: str, message: str, field_: str) -> Obj:
    return {"reason": reason, "message": message, "field": field_}


def _conflict(resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": name, "kind": resource},
    )


def _fold_string_data(secret: Obj) -> None:
    """stringData is write-only: the API folds it into base64 data."""
    string_data = secret.pop("stringData", None) or {}
    if string_data:
        data = secret.setdefault("data", {}) or {}
        for k, v in string_data.items():
            data[k] = base64.b64encode(v.encode()).decode()
        secret["data"] = data


def _check_pod_update(prev: Obj, new: Obj) -> None:
    """Pod specs are immutable but for images, activeDeadlineSeconds and added tolerations."""
    a, b = copy.deepcopy(prev.get("spec", {})), copy.deepcopy(new.get("spec", {}))
    for spec in (a, b):
        spec.pop("activeDeadlineSeconds", None)
        spec.pop("tolerations", None)
        for group in ("initContainers", "containers"):
            for c in spec.get(group) or []:
                c.pop("image", None)
    if a != b:
        raise ApiError(
            422,
            "Invalid",
            f'Pod "{prev["metadata"]["name"]}" is invalid: spec: Forbidden: pod updates may not '
            "change fields other than `spec.containers[*].image`, "
            "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, "
            "`spec.tolerations` (only additions to existing tolerations)",
        )


def _qos_class(spec: Obj) -> str:
    containers = spec.get("containers") or []
    reqs = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in reqs):
        return "BestEffort"
    guaranteed = all(
        {"cpu", "memory"} <= set(r.get("limits") or {})
        and all(
            (r.get("requests") or {}).get(k, r["limits"][k]) == r["limits"][k]
            for k in ("cpu", "memory")
        )
        for r in reqs
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _terminated(exit_code: int, reason: str, started: str) -> Obj:
    return {
        "terminated": {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now_rfc3339(),
            "containerID": f"containerd://{secrets.token_hex(32)}",
        }
    }


def _cstatus(c: Obj, state: Obj, ready: bool = False, started_: bool = False) -> Obj:
    """A containerStatuses entry as the kubelet writes it for ``state``."""
    out: Obj = {
        "name": c["name"],
        "state": state,
        "lastState": {},
        "ready": ready,
        "restartCount": 0,
        "image": c.get("image", ""),
        "imageID": "",
        "started": started_,
    }
    if "running" in state or "terminated" in state:
        out["imageID"] = f"{c.get('image', '').split(':')[0]}@sha256:{secrets.token_hex(32)}"
        out["containerID"] = (
            state["terminated"]["containerID"]
            if "terminated" in state
            else f"containerd://{secrets.token_hex(32)}"
        )
    return out
