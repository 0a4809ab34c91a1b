"""Kubernetes plumbing shared by the run launcher and the IDE spawner.

``client`` builds an ApiClient from :class:`server.config.KubeSettings`;
``reflector`` keeps one watched cache of Kiln pods per namespace; ``runtime``
holds both for a process so the launcher and the spawner share one watch.
"""

from server.kube.client import new_api_client
from server.kube.reflector import KILN_SELECTOR, PodReflector
from server.kube.runtime import KubeRuntime, close_shared_runtimes, shared_runtime

__all__ = [
    "KILN_SELECTOR",
    "KubeRuntime",
    "PodReflector",
    "close_shared_runtimes",
    "new_api_client",
    "shared_runtime",
]
