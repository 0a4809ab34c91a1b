"""One shared, watched cache of Kiln pods per namespace (an informer).

Why: the launcher and the spawner need the state of hundreds of pods every few
seconds. One list+watch per namespace per process costs the API server one
long-lived request; a GET per run per check would cost thousands.

Invariants (what callers may rely on):

* What is cached: every pod in ``namespace`` matching ``label_selector``
  (default ``app.kubernetes.io/managed-by=kiln``), keyed by pod name, as the
  JSON object the API server sent (camelCase dict, not a model). Pod names
  are unique in a namespace at any instant, and events arrive in
  resourceVersion order, so a DELETED followed by an ADDED for a re-created
  pod of the same name leaves the new pod in the cache. Callers must treat
  the dicts as read-only.
* ``first_load`` is set after the first successful LIST. Before that the
  cache is empty and means nothing; ``get`` returns None, ``wait_for`` waits.
* Staleness: the cache lags the API by the watch latency. A pod this process
  just created may be absent for a moment, so "absent" means "not seen yet"
  unless confirmed by a GET (the launcher and spawner do that before
  reporting a pod gone). While the watch is disconnected the cache is frozen;
  ``connected`` is False then.
* Nothing is lost across reconnects: a dropped or ended watch resumes from the
  last resourceVersion seen (BOOKMARK events advance it while nothing
  changes), so the server replays what happened meanwhile. If that version is
  too old (410 Gone: an ERROR event with code 410, or HTTP 410) the cache is
  rebuilt from a fresh LIST, which also drops pods deleted meanwhile.

Restart policy:

* Every watch ends on purpose after ``restart_seconds`` (server-side
  ``timeoutSeconds`` and a client-side deadline, whichever comes first) and is
  reopened from the last resourceVersion: this bounds how long a silently
  dead connection (a load balancer that dropped it without a FIN) can freeze
  the cache.
* Connection errors, 5xx and other API errors reopen the watch after an
  exponential backoff with jitter (``backoff_initial`` doubling up to
  ``backoff_max``); the backoff resets once a watch is established.
* Nothing here ever gives up: ``stop()`` is the only way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, ApiException, CoreV1Api

log = logging.getLogger(__name__)

KILN_SELECTOR = "app.kubernetes.io/managed-by=kiln"

Pod = dict[str, Any]
Predicate = Callable[[Pod | None], bool]


class _Gone(Exception):
    """The resourceVersion we resume from was compacted away: re-list."""


async def read_json(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """Body of a ``_preload_content=False`` response; raise ApiException on non-2xx.

    kubernetes-asyncio skips its own status check when content is not
    preloaded, so every raw call goes through here.
    """
    try:
        body = await resp.read()
    finally:
        resp.release()
    if not 200 <= resp.status <= 299:
        exc = ApiException(status=resp.status, reason=resp.reason)
        exc.body = body.decode("utf-8", "replace")
        raise exc
    return json.loads(body)


class PodReflector:
    """List+watch of Kiln pods in one namespace. See the module docstring."""

    def __init__(
        self,
        api: ApiClient,
        namespace: str,
        *,
        label_selector: str = KILN_SELECTOR,
        restart_seconds: float = 300.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        request_timeout: float = 30.0,
    ) -> None:
        self.namespace = namespace
        self.label_selector = label_selector
        self.restart_seconds = restart_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self.first_load = asyncio.Event()
        self.connected = False
        self.resource_version: str | None = None
        # counters for metrics and tests: how often each path was taken
        self.stats: dict[str, int] = {
            "lists": 0,
            "watches": 0,
            "events": 0,
            "bookmarks": 0,
            "gone": 0,
            "errors": 0,
        }
        self._core = CoreV1Api(api)
        self._pods: dict[str, Pod] = {}
        self._waiters: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None

    # -- reading -------------------------------------------------------------

    def get(self, name: str) -> Pod | None:
        """The cached pod called ``name``, or None (not seen yet, or gone)."""
        return self._pods.get(name)

    def pods(self) -> dict[str, Pod]:
        """A snapshot of the whole cache (name → pod)."""
        return dict(self._pods)

    async def wait_for(self, name: str, predicate: Predicate, timeout: float) -> Pod | None:
        """Wait until ``predicate(get(name))`` holds; return that pod (or None).

        Waits for the first load first, so "absent" is never judged on an
        empty cache. Raises TimeoutError after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            await self.first_load.wait()
            while True:
                pod = self._pods.get(name)
                if predicate(pod):
                    return pod
                event = self._waiters.get(name)
                if event is None:
                    event = self._waiters[name] = asyncio.Event()
                await event.wait()

    async def wait_first_load(self, timeout: float) -> bool:
        """True once the first LIST has landed, False if ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self.first_load.wait()
        except TimeoutError:
            return False
        return True

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Begin the list+watch loop in the background (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(
                self._run(), name=f"kiln-pod-reflector-{self.namespace}"
            )

    async def stop(self) -> None:
        """Stop watching; the cache keeps its last contents."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- the loop ------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.backoff_initial
        gone_in_a_row = 0
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                await self._watch()
                backoff = self.backoff_initial
                gone_in_a_row = 0
            except _Gone:
                self.stats["gone"] += 1
                gone_in_a_row += 1
                log.info(
                    "pod watch in %s: resourceVersion %s expired, re-listing",
                    self.namespace,
                    self.resource_version,
                )
                self.resource_version = None
                if gone_in_a_row > 1:  # a fresh list expired at once: do not spin
                    await asyncio.sleep(min(backoff * gone_in_a_row, self.backoff_max))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection errors, 5xx, 401/403, garbage
                self.connected = False
                self.stats["errors"] += 1
                delay = backoff * (0.5 + random.random() / 2)
                log.warning(
                    "pod watch in %s failed (%s: %s); retrying in %.1fs",
                    self.namespace,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self.backoff_max)

    async def _list(self) -> None:
        self.stats["lists"] += 1
        resp = await self._core.list_namespaced_pod(
            self.namespace,
            label_selector=self.label_selector,
            _preload_content=False,
            _request_timeout=self.request_timeout,
        )
        data = await read_json(resp)
        fresh = {p["metadata"]["name"]: p for p in data.get("items") or []}
        changed = set(self._pods) | set(fresh)
        self._pods = fresh
        self.resource_version = data["metadata"]["resourceVersion"]
        self.first_load.set()
        for name in changed:
            self._notify(name)

    async def _watch(self) -> None:
        """One watch request, from ``resource_version`` until it ends or the deadline."""
        self.stats["watches"] += 1
        resp = await self._core.list_namespaced_pod(
            self.namespace,
            label_selector=self.label_selector,
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=self.resource_version,
            timeout_seconds=max(1, int(self.restart_seconds)),
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.request_timeout),
        )
        deadline = asyncio.timeout(self.restart_seconds)
        try:
            if resp.status == 410:
                raise _Gone
            if resp.status != 200:
                await read_json(resp)  # raises ApiException with the Status body
            self.connected = True
            async with deadline:
                while True:
                    line = await resp.content.readline()
                    if not line:
                        return  # server ended it (timeoutSeconds): resume
                    if line.strip():
                        self._apply(json.loads(line))
        except TimeoutError:
            if not deadline.expired():
                raise
            # our own deadline: a deliberate restart, resume from resource_version
        finally:
            self.connected = False
            resp.release()

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone
            exc = ApiException(status=obj.get("code") or 500, reason=obj.get("reason"))
            exc.body = json.dumps(obj)
            raise exc
        meta = obj.get("metadata") or {}
        version = meta.get("resourceVersion")
        if kind == "BOOKMARK":
            self.stats["bookmarks"] += 1
            if version:
                self.resource_version = version
            return
        name = meta.get("name")
        if kind not in ("ADDED", "MODIFIED", "DELETED") or not name:
            raise ValueError(f"unexpected watch event {kind!r}")
        self.stats["events"] += 1
        if kind == "DELETED":
            self._pods.pop(name, None)
        else:
            self._pods[name] = obj
        if version:
            self.resource_version = version
        self._notify(name)

    def _notify(self, name: str) -> None:
        event = self._waiters.pop(name, None)
        if event is not None:
            event.set()
