"""The per-process Kubernetes context: one ApiClient, one PodReflector per namespace.

Why: in ``kiln up`` the launcher (scheduler) and the spawner (IDE broker) live
in one process and must share one watch per namespace, not open one each.
Both take a :class:`KubeRuntime` explicitly; when the composition root does
not pass one, they fall back to :func:`shared_runtime`, a small module-level
registry keyed by (kubeconfig, context) so the same cluster gets one runtime.

A runtime is bound to the event loop it was first used on (its aiohttp
session is); :func:`close_shared_runtimes` closes and forgets them all, for
shutdown and tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio.client import ApiClient

from server.config import KubeSettings
from server.kube.client import new_api_client
from server.kube.reflector import KILN_SELECTOR, PodReflector


class KubeRuntime:
    """Lazily creates and owns the ApiClient and the per-namespace reflectors."""

    def __init__(
        self,
        kube: KubeSettings,
        *,
        config_dict: Mapping[str, Any] | None = None,
        api_client: ApiClient | None = None,
    ) -> None:
        self.kube = kube
        self._config_dict = config_dict
        self._api = api_client
        self._owns_api = api_client is None
        self._reflectors: dict[str, PodReflector] = {}
        self._lock = asyncio.Lock()

    async def api(self) -> ApiClient:
        """The shared ApiClient (created on first use)."""
        if self._api is None:
            async with self._lock:
                if self._api is None:
                    self._api = await new_api_client(self.kube, config_dict=self._config_dict)
        return self._api

    async def reflector(self, namespace: str | None = None) -> PodReflector:
        """The started reflector for ``namespace`` (default: the configured one)."""
        ns = namespace or self.kube.namespace
        found = self._reflectors.get(ns)
        if found is None:
            api = await self.api()
            found = self._reflectors.get(ns)
            if found is None:
                found = self._reflectors[ns] = PodReflector(
                    api,
                    ns,
                    label_selector=KILN_SELECTOR,
                    restart_seconds=float(self.kube.watch_restart_seconds),
                )
        found.start()
        return found

    async def close(self) -> None:
        """Stop every reflector and close the client (if this runtime made it)."""
        for reflector in list(self._reflectors.values()):
            await reflector.stop()
        self._reflectors.clear()
        if self._api is not None and self._owns_api:
            await self._api.close()
        self._api = None


_SHARED: dict[tuple[str | None, str | None], KubeRuntime] = {}


def shared_runtime(kube: KubeSettings) -> KubeRuntime:
    """The process-wide runtime for the cluster ``kube`` points at."""
    key = (kube.kubeconfig, kube.context)
    runtime = _SHARED.get(key)
    if runtime is None:
        runtime = _SHARED[key] = KubeRuntime(kube)
    return runtime


async def close_shared_runtimes() -> None:
    """Close every runtime made by :func:`shared_runtime` (shutdown, tests)."""
    runtimes = list(_SHARED.values())
    _SHARED.clear()
    for runtime in runtimes:
        await runtime.close()
