"""The pod reflector keeps a correct cache across drops, 410s and restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from server.config import KubeSettings
from server.kube.client import new_api_client
from server.kube.reflector import KILN_SELECTOR, PodReflector
from tests.k8s.conftest import NAMESPACE, eventually, synced
from tests.k8s.fake_apiserver import FakeKubeAPI


def pod(name: str, managed: bool = True) -> dict[str, object]:
    labels = {"app.kubernetes.io/managed-by": "kiln"} if managed else {"app": "other"}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox:1"}]},
    }


@pytest.fixture
async def reflector(fake_api: FakeKubeAPI) -> AsyncIterator[PodReflector]:
    api = await new_api_client(KubeSettings(), config_dict=fake_api.kubeconfig())
    r = PodReflector(api, NAMESPACE, restart_seconds=300, backoff_initial=0.02, backoff_max=0.1)
    r.start()
    try:
        yield r
    finally:
        await r.stop()
        await api.close()


def cached(r: PodReflector) -> dict[str, str]:
    """name → phase, the part of the cache these tests reason about."""
    return {n: p["status"]["phase"] for n, p in r.pods().items()}


def truth(fake: FakeKubeAPI) -> dict[str, str]:
    return {
        p["metadata"]["name"]: p["status"]["phase"]
        for p in fake.list("pods", NAMESPACE)
        if p["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "kiln"
    }


async def test_first_load_and_selector(reflector: PodReflector, fake_api: FakeKubeAPI) -> None:
    fake_api.create("pods", NAMESPACE, pod("a"))
    fake_api.create("pods", NAMESPACE, pod("other", managed=False))
    fake_api.create("pods", "elsewhere", pod("b"))
    assert await reflector.wait_first_load(5)
    await synced(reflector, fake_api)
    assert cached(reflector) == {"a": "Pending"}
    assert reflector.label_selector == KILN_SELECTOR
    await eventually(lambda: fake_api.open_watches == 1)
    assert fake_api.count("GET", "/pods", labelSelector=KILN_SELECTOR, watch="True") >= 1
    fake_api.set_pod_running("a")
    await synced(reflector, fake_api)
    assert cached(reflector) == {"a": "Running"}
    fake_api.delete("pods", NAMESPACE, "a")
    await synced(reflector, fake_api)
    assert cached(reflector) == {}


async def test_watch_asks_for_bookmarks_and_resumes(
    reflector: PodReflector, fake_api: FakeKubeAPI
) -> None:
    await reflector.wait_first_load(5)
    await eventually(lambda: fake_api.open_watches == 1)
    _, _, query = [r for r in fake_api.requests if r[2].get("watch")][-1]
    assert query["allowWatchBookmarks"] == "True"
    assert query["resourceVersion"] == str(fake_api.resource_version)
    assert query["timeoutSeconds"] == "300"


async def test_survives_dropped_watch(reflector: PodReflector, fake_api: FakeKubeAPI) -> None:
    fake_api.create("pods", NAMESPACE, pod("a"))
    fake_api.create("pods", NAMESPACE, pod("b"))
    await reflector.wait_first_load(5)
    await synced(reflector, fake_api)
    await eventually(lambda: fake_api.open_watches == 1)
    # drop, then change things while the client is disconnected
    fake_api.drop_watches()
    fake_api.set_pod_succeeded("a")
    fake_api.delete("pods", NAMESPACE, "b")
    fake_api.create("pods", NAMESPACE, pod("c"))
    await synced(reflector, fake_api)
    assert cached(reflector) == truth(fake_api) == {"a": "Succeeded", "c": "Pending"}
    assert reflector.stats["lists"] == 1  # resumed from resourceVersion, no re-list
    assert reflector.stats["watches"] >= 2
    assert reflector.stats["errors"] >= 1  # an aborted stream is a connection error


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
async def test_relists_after_410(
    reflector: PodReflector, fake_api: FakeKubeAPI, as_http: bool
) -> None:
    fake_api.gone_as_http = as_http
    for name in ("a", "b", "c"):
        fake_api.create("pods", NAMESPACE, pod(name))
    await reflector.wait_first_load(5)
    await synced(reflector, fake_api)
    await eventually(lambda: fake_api.open_watches == 1)
    waiter = asyncio.create_task(reflector.wait_for("b", lambda p: p is None, timeout=5))
    # while disconnected: changes, then the history is compacted away
    fake_api.drop_watches()
    fake_api.delete("pods", NAMESPACE, "b")
    fake_api.set_pod_running("c")
    fake_api.create("pods", NAMESPACE, pod("d"))
    fake_api.expire_history()
    await eventually(lambda: reflector.stats["gone"] == 1)
    await synced(reflector, fake_api)
    assert cached(reflector) == truth(fake_api) == {"a": "Pending", "c": "Running", "d": "Pending"}
    assert reflector.stats["lists"] == 2
    assert await waiter is None  # the re-list woke the waiter for the deleted pod
    # and it keeps following changes afterwards
    fake_api.set_pod_succeeded("d")
    await synced(reflector, fake_api)
    assert cached(reflector)["d"] == "Succeeded"


async def test_bookmarks_spare_a_relist(reflector: PodReflector, fake_api: FakeKubeAPI) -> None:
    fake_api.create("pods", NAMESPACE, pod("a"))
    await reflector.wait_first_load(5)
    await synced(reflector, fake_api)
    for i in range(5):  # changes the pod watch does not see
        fake_api.create("secrets", NAMESPACE, {"metadata": {"name": f"s{i}"}})
    await synced(reflector, fake_api)  # via a BOOKMARK
    assert reflector.stats["bookmarks"] >= 1
    assert reflector.resource_version == str(fake_api.resource_version)
    await eventually(lambda: fake_api.open_watches == 1)
    fake_api.drop_watches()
    fake_api.expire_history()  # compacted up to now: the bookmarked version is still valid
    fake_api.set_pod_running("a")
    await synced(reflector, fake_api)
    assert cached(reflector) == {"a": "Running"}
    assert reflector.stats["gone"] == 0 and reflector.stats["lists"] == 1


async def test_deliberate_restart(fake_api: FakeKubeAPI) -> None:
    api = await new_api_client(KubeSettings(), config_dict=fake_api.kubeconfig())
    r = PodReflector(api, NAMESPACE, restart_seconds=0.3)
    r.start()
    try:
        await r.wait_first_load(5)
        await eventually(lambda: r.stats["watches"] >= 3, timeout=5)
        assert r.stats["lists"] == 1 and r.stats["errors"] == 0
        fake_api.create("pods", NAMESPACE, pod("late"))
        await synced(r, fake_api)
        assert cached(r) == {"late": "Pending"}
    finally:
        await r.stop()
        await api.close()


async def test_server_side_timeout_resumes(fake_api: FakeKubeAPI) -> None:
    """The API server ending the watch (timeoutSeconds) is a normal restart, not an error."""
    api = await new_api_client(KubeSettings(), config_dict=fake_api.kubeconfig())
    r = PodReflector(api, NAMESPACE, restart_seconds=1)
    r.start()
    try:
        await r.wait_first_load(5)
        await eventually(lambda: r.stats["watches"] >= 2, timeout=5)
        assert r.stats["errors"] == 0 and r.stats["lists"] == 1
    finally:
        await r.stop()
        await api.close()


async def test_reconnects_with_backoff_when_server_is_down(fake_api: FakeKubeAPI) -> None:
    url = fake_api.url
    api = await new_api_client(KubeSettings(), config_dict=fake_api.kubeconfig())
    r = PodReflector(api, NAMESPACE, backoff_initial=0.02, backoff_max=0.1)
    await fake_api.close()
    r.start()
    try:
        await eventually(lambda: r.stats["errors"] >= 3)
        assert not r.first_load.is_set() and not r.connected
        # the server comes back on the same port
        port = int(url.rsplit(":", 1)[1])
        again = FakeKubeAPI(token=fake_api.token)
        await _start_on(again, port)
        try:
            again.create("pods", NAMESPACE, pod("a"))
            assert await r.wait_first_load(5)
            await synced(r, again)
            assert cached(r) == {"a": "Pending"}
        finally:
            await again.close()
    finally:
        await r.stop()
        await api.close()


async def _start_on(fake: FakeKubeAPI, port: int) -> None:
    from aiohttp import web

    await fake.start()  # builds the app on a random port; move it to the old one
    assert fake._runner is not None
    site = web.TCPSite(fake._runner, "127.0.0.1", port)
    await site.start()
    fake.url = f"http://127.0.0.1:{port}"


async def test_wait_for_times_out(reflector: PodReflector) -> None:
    with pytest.raises(TimeoutError):
        await reflector.wait_for("nope", lambda p: p is not None, timeout=0.1)
    assert await reflector.wait_for("nope", lambda p: p is None, timeout=1) is None
