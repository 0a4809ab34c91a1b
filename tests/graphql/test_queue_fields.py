"""Run.waitingReason and Run.queuePosition over GraphQL."""

from __future__ import annotations

from server.services import runs
from tests.graphql.conftest import add_runs, gid

Q = """query($id: ID!) { run(id: $id) { status waitingReason queuePosition } }"""
LIST = """{ runs(first: 10) { edges { node { databaseId waitingReason queuePosition } } } }"""


async def test_queued_runs_say_why_they_wait(api, tenant) -> None:
    first = await runs.trigger_run(tenant.actor(), tenant.job.id)
    second = await runs.trigger_run(tenant.actor(), tenant.job.id)
    (done,) = await add_runs(tenant, 1)
    data = await api.data(Q, {"id": gid("Run", second.id)}, token=tenant.token)
    assert data["run"] == {"status": "queued", "queuePosition": 2,
                           "waitingReason": f"Queued behind run {first.id} of the same job"}
    data = await api.data(Q, {"id": gid("Run", done.id)}, token=tenant.token)
    assert data["run"]["waitingReason"] is None and data["run"]["queuePosition"] is None
    listed = await api.data(LIST, token=tenant.token)
    by_id = {e["node"]["databaseId"]: e["node"] for e in listed["runs"]["edges"]}
    assert by_id[first.id]["queuePosition"] == 1
    assert by_id[first.id]["waitingReason"] == "Waiting to be dispatched"
    assert by_id[done.id]["queuePosition"] is None
