"""The fake API server answers kubernetes-asyncio as a real cluster would."""

from __future__ import annotations

import asyncio
import base64

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiException

from server.config import KubeSettings
from server.kube.client import new_api_client
from tests.k8s.fake_apiserver import FakeKubeAPI

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p1", "labels": {"app.kubernetes.io/managed-by": "kiln", "tier": "a"}},
    "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36"}]},
}


@pytest.fixture
async def core(fake_api: FakeKubeAPI):
    api = await new_api_client(KubeSettings(), config_dict=fake_api.kubeconfig())
    try:
        yield client.CoreV1Api(api)
    finally:
        await api.close()


async def test_version_and_discovery(core: client.CoreV1Api, fake_api: FakeKubeAPI) -> None:
    api = core.api_client
    version = await client.VersionApi(api).get_code()
    assert version.major == "1"
    resources = await core.get_api_resources()
    assert {"pods", "secrets", "persistentvolumeclaims", "services"} <= {
        r.name for r in resources.resources
    }


async def test_bearer_token_required(fake_api: FakeKubeAPI) -> None:
    config = fake_api.kubeconfig()
    config["users"][0]["user"]["token"] = "wrong"
    api = await new_api_client(KubeSettings(), config_dict=config)
    try:
        with pytest.raises(ApiException) as err:
            await client.CoreV1Api(api).list_namespaced_pod("kiln")
        assert err.value.status == 401
    finally:
        await api.close()


async def test_create_get_conflict_and_delete(core: client.CoreV1Api) -> None:
    created = await core.create_namespaced_pod("kiln", POD)
    assert created.metadata.uid and created.metadata.resource_version
    assert created.status.phase == "Pending"
    assert created.spec.containers[0].termination_message_path == "/dev/termination-log"
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_pod("kiln", POD)
    assert err.value.status == 409
    assert '"reason": "AlreadyExists"' in err.value.body
    got = await core.read_namespaced_pod("p1", "kiln")
    assert got.metadata.uid == created.metadata.uid
    deleted = await core.delete_namespaced_pod("p1", "kiln")
    assert deleted.metadata.name == "p1"
    with pytest.raises(ApiException) as err:
        await core.read_namespaced_pod("p1", "kiln")
    assert err.value.status == 404
    assert '"reason": "NotFound"' in err.value.body


async def test_invalid_object_is_422(core: client.CoreV1Api) -> None:
    bad = {**POD, "spec": {"containers": [{"name": "main", "image": "x", "bogus": 1}]}}
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_pod("kiln", bad)
    assert err.value.status == 422
    no_image = {**POD, "spec": {"containers": [{"name": "main"}]}}
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_pod("kiln", no_image)
    assert err.value.status == 422 and "image" in err.value.body


async def test_label_selectors(core: client.CoreV1Api) -> None:
    for name, tier in (("a", "x"), ("b", "y"), ("c", "z")):
        pod = {**POD, "metadata": {"name": name, "labels": {"tier": tier}}}
        await core.create_namespaced_pod("kiln", pod)
    await core.create_namespaced_pod("kiln", {**POD, "metadata": {"name": "d"}})

    async def names(selector: str) -> list[str]:
        pods = await core.list_namespaced_pod("kiln", label_selector=selector)
        return sorted(p.metadata.name for p in pods.items)

    assert await names("tier=x") == ["a"]
    assert await names("tier==y") == ["b"]
    assert await names("tier!=x") == ["b", "c", "d"]
    assert await names("tier in (x, z)") == ["a", "c"]
    assert await names("tier notin (x)") == ["b", "c", "d"]
    assert await names("tier") == ["a", "b", "c"]
    assert await names("!tier") == ["d"]
    assert await names("tier in (x,y),tier!=y") == ["a"]


async def test_secret_string_data_and_patches(core: client.CoreV1Api) -> None:
    secret = {"metadata": {"name": "s1"}, "stringData": {"TOKEN": "t0ken"}}
    created = await core.create_namespaced_secret("kiln", secret)
    assert created.data == {"TOKEN": base64.b64encode(b"t0ken").decode()}
    assert created.type == "Opaque"
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u-1"}
    patched = await core.patch_namespaced_secret(
        "s1", "kiln", {"metadata": {"ownerReferences": [ref]}}
    )  # a dict body is sent as a strategic merge patch
    assert patched.metadata.owner_references[0].uid == "u-1"
    ref2 = {**ref, "name": "q", "uid": "u-2"}
    patched = await core.patch_namespaced_secret(
        "s1", "kiln", {"metadata": {"ownerReferences": [ref2]}}
    )  # merged by uid, not replaced
    assert [r.uid for r in patched.metadata.owner_references] == ["u-1", "u-2"]
    patched = await core.patch_namespaced_secret(
        "s1", "kiln", [{"op": "remove", "path": "/metadata/ownerReferences/0"}]
    )  # a list body is a JSON patch
    assert [r.uid for r in patched.metadata.owner_references] == ["u-2"]
    again = await core.patch_namespaced_secret("s1", "kiln", {"metadata": {}})
    assert again.metadata.resource_version == patched.metadata.resource_version  # no-op


async def test_pod_spec_is_immutable(core: client.CoreV1Api) -> None:
    await core.create_namespaced_pod("kiln", POD)
    with pytest.raises(ApiException) as err:
        await core.patch_namespaced_pod("p1", "kiln", {"spec": {"restartPolicy": "Always"}})
    assert err.value.status == 422
    ok = await core.patch_namespaced_pod("p1", "kiln", {"metadata": {"labels": {"x": "1"}}})
    assert ok.metadata.labels["x"] == "1"


async def test_owner_garbage_collection(core: client.CoreV1Api, fake_api: FakeKubeAPI) -> None:
    pod = await core.create_namespaced_pod("kiln", POD)
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "p1", "uid": pod.metadata.uid}
    await core.create_namespaced_secret(
        "kiln", {"metadata": {"name": "owned", "ownerReferences": [ref]}}
    )
    await core.create_namespaced_secret("kiln", {"metadata": {"name": "free"}})
    await core.delete_namespaced_pod("p1", "kiln")
    for _ in range(100):
        if fake_api.get("secrets", "kiln", "owned") is None:
            break
        await asyncio.sleep(0.01)
    assert fake_api.get("secrets", "kiln", "owned") is None
    assert fake_api.get("secrets", "kiln", "free") is not None


async def test_graceful_pod_deletion(core: client.CoreV1Api, fake_api: FakeKubeAPI) -> None:
    fake_api.pod_termination_delay = 0.2
    await core.create_namespaced_pod("kiln", POD)
    fake_api.set_pod_running("p1")
    deleted = await core.delete_namespaced_pod("p1", "kiln", grace_period_seconds=5)
    assert deleted.metadata.deletion_timestamp is not None
    assert fake_api.get("pods", "kiln", "p1") is not None  # terminating
    await asyncio.sleep(0.3)
    assert fake_api.get("pods", "kiln", "p1") is None


async def test_status_shapes_deserialize(core: client.CoreV1Api, fake_api: FakeKubeAPI) -> None:
    """Every helper's status passes kubernetes-asyncio's model validation."""
    transitions = [
        fake_api.schedule_pod,
        fake_api.set_pod_unschedulable,
        fake_api.set_pod_image_pull_backoff,
        fake_api.set_pod_running,
        fake_api.set_pod_succeeded,
        fake_api.set_pod_failed,
        fake_api.set_pod_oom_killed,
        fake_api.set_pod_evicted,
        fake_api.set_pod_deadline_exceeded,
    ]
    for i, transition in enumerate(transitions):
        name = f"s{i}"
        await core.create_namespaced_pod("kiln", {**POD, "metadata": {"name": name}})
        transition(name)
        pod = await core.read_namespaced_pod(name, "kiln")
        assert pod.status.phase in ("Pending", "Running", "Succeeded", "Failed")
    oom = await core.read_namespaced_pod("s6", "kiln")
    assert oom.status.container_statuses[0].state.terminated.reason == "OOMKilled"
    assert oom.status.container_statuses[0].state.terminated.exit_code == 137
    evicted = await core.read_namespaced_pod("s7", "kiln")
    assert evicted.status.reason == "Evicted"


async def test_watch_with_library_watch(core: client.CoreV1Api, fake_api: FakeKubeAPI) -> None:
    """kubernetes-asyncio's own Watch parses the stream into V1Pod models."""
    await core.create_namespaced_pod("kiln", POD)
    pods = await core.list_namespaced_pod("kiln")
    rv = pods.metadata.resource_version

    async def later() -> None:
        await asyncio.sleep(0.05)
        fake_api.set_pod_running("p1")
        fake_api.delete("pods", "kiln", "p1")

    task = asyncio.create_task(later())
    seen = []
    async with watch.Watch() as w:
        async for event in w.stream(
            core.list_namespaced_pod, "kiln", resource_version=rv, timeout_seconds=2
        ):
            seen.append((event["type"], event["object"].status.phase))
            if event["type"] == "DELETED":
                break
    await task
    assert seen[0] == ("MODIFIED", "Pending")  # scheduled
    assert ("MODIFIED", "Running") in seen and seen[-1][0] == "DELETED"


async def test_watch_selector_transitions_and_410(fake_api: FakeKubeAPI) -> None:
    import aiohttp

    fake_api.create("pods", "kiln", {**POD, "metadata": {"name": "p1", "labels": {"t": "a"}}})
    rv = fake_api.resource_version
    fake_api.create("pods", "kiln", {**POD, "metadata": {"name": "p2", "labels": {"t": "b"}}})
    pod = fake_api.get("pods", "kiln", "p1")
    fake_api._update(
        "pods", "kiln", "p1", {**pod, "metadata": {**pod["metadata"], "labels": {"t": "b"}}}, False
    )
    headers = {"Authorization": f"Bearer {fake_api.token}"}
    url = f"{fake_api.url}/api/v1/namespaces/kiln/pods"
    async with aiohttp.ClientSession(headers=headers) as http:
        params = {
            "watch": "true",
            "labelSelector": "t=a",
            "resourceVersion": str(rv),
            "timeoutSeconds": "1",
        }
        async with http.get(url, params=params) as resp:
            lines = [line async for line in resp.content]
        events = [__import__("json").loads(x) for x in lines]
        assert [e["type"] for e in events] == ["DELETED"]  # p1 left the selection
        fake_api.expire_history()
        async with http.get(url, params=params) as resp:
            assert resp.status == 200
            event = __import__("json").loads(await resp.content.readline())
        assert event["type"] == "ERROR" and event["object"]["code"] == 410
        fake_api.gone_as_http = True
        async with http.get(url, params=params) as resp:
            assert resp.status == 410
