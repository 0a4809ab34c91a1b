"""Build a kubernetes-asyncio ApiClient from Kiln's settings.

Each call returns a client with its own ``Configuration`` (never the library's
process-wide default), so two clusters or a test's fake API server can coexist
in one process. Order of precedence: an explicit kubeconfig dict (tests,
embedding), then ``KubeSettings.kubeconfig`` (a path; ``context`` picks the
context), else the in-cluster service account (token file re-read as it
rotates).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration

from server.config import KubeSettings


async def new_api_client(
    kube: KubeSettings, *, config_dict: Mapping[str, Any] | None = None
) -> ApiClient:
    """An ApiClient for the cluster ``kube`` points at; the caller closes it."""
    conf = Configuration()
    if config_dict is not None:
        await config.load_kube_config_from_dict(
            dict(config_dict), context=kube.context, client_configuration=conf
        )
    elif kube.kubeconfig:
        await config.load_kube_config(
            config_file=kube.kubeconfig,
            context=kube.context,
            client_configuration=conf,
            persist_config=False,  # never write refreshed tokens back into the user's file
        )
    else:
        config.load_incluster_config(client_configuration=conf)
    return ApiClient(configuration=conf)
