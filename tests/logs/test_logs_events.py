"""runUpdated, runsUpdated, ideSessionUpdated, and slow consumers."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from server.ids import to_global_id
from server.models import IdeSession, RunStatus
from server.runs import state
from tests.logs.conftest import Api, Client, start_run

RUN_UPDATED = (
    "subscription($r: ID!) { runUpdated(runId: $r) { id status statusCode "
    "steps { index status } job { name } } }"
)


async def _next(client: Client, op: str) -> dict:
    msg = await client.recv()
    assert msg.get("id") == op and msg["type"] == "next", msg
    assert not msg["payload"].get("errors"), msg
    return msg["payload"]["data"]


async def test_run_updated_and_runs_updated(api: Api) -> None:
    run = await start_run(api)
    client = await Client.connect(api, run.tenant.token)
    op = await client.subscribe(RUN_UPDATED, {"r": run.gid})
    dash = await Client.connect(api, run.tenant.token)
    by_job = await dash.subscribe(
        "subscription($j: ID!) { runsUpdated(jobId: $j) { id status } }",
        {"j": to_global_id("Job", run.tenant.job.id)},
    )
    whole = await dash.subscribe("subscription { runsUpdated { id statusCode } }", {})
    await asyncio.sleep(0.2)
    await run.post("steps", {"steps": [{"index": 1, "name": "dbt build", "status": 3}]})
    got = (await _next(client, op))["runUpdated"]
    assert got["id"] == run.gid and got["status"] == "running" and got["job"]["name"] == "build"
    assert got["steps"] == [{"index": 1, "status": "running"}]
    await run.finish()
    got = (await _next(client, op))["runUpdated"]
    assert got["status"] == "success" and got["statusCode"] == 10
    assert got["steps"] == [{"index": 1, "status": "success"}]
    seen: dict[str, list] = {by_job: [], whole: []}
    while len(seen[by_job]) < 2 or len(seen[whole]) < 2:
        msg = await dash.recv()
        seen[msg["id"]].append(msg["payload"]["data"]["runsUpdated"])
    assert seen[by_job][-1] == {"id": run.gid, "status": "success"}
    assert seen[whole][-1] == {"id": run.gid, "statusCode": 10}
    await client.close()
    await dash.close()


async def test_ide_session_updated(api: Api) -> None:
    from server.services import accounts

    run = await start_run(api)
    t = run.tenant
    personal = await accounts.create_token(t.account, name="me", role="developer", user=t.user)
    session = await IdeSession.create(account=t.account, user=t.user, project=t.project)
    client = await Client.connect(api, personal.secret)
    op = await client.subscribe(
        "subscription($s: ID!) { ideSessionUpdated(sessionId: $s) { id state } }",
        {"s": to_global_id("IdeSession", session.id)},
    )
    await asyncio.sleep(0.2)
    await IdeSession.filter(id=session.id).update(state="ready")
    payload = json.dumps(
        {"session": session.id, "user": t.user.id, "account": t.account.id, "state": "ready"}
    )
    async with api.platform.db.acquire() as conn:
        await conn.execute("SELECT pg_notify('ide_events', $1)", payload)
    got = (await _next(client, op))["ideSessionUpdated"]
    assert got["state"] == "ready"
    # a service token of another account cannot see it
    other = await start_run(api)
    stranger = await Client.connect(api, other.tenant.token)
    await stranger.subscribe(
        "subscription($s: ID!) { ideSessionUpdated(sessionId: $s) { id } }",
        {"s": to_global_id("IdeSession", session.id)},
    )
    assert (await stranger.recv())["type"] == "error"
    await client.close()
    await stranger.close()


async def test_slow_consumer_resumes_from_its_cursor_without_stalling_others(api: Api) -> None:
    from server.gateway.graphql_ws import _REGISTRIES
    from server.logs.hub import hubs

    reg = next(iter(_REGISTRIES.values()))
    old = reg.opts.max_buffer
    reg.opts.max_buffer = 64 * 1024
    h = await hubs(api.platform)
    overflows = h.logs.overflows
    run = await start_run(api)
    # its own session: aiohttp stops reading the socket while nobody calls receive()
    slow_session = aiohttp.ClientSession()
    try:
        slow = await Client.connect(api, run.tenant.token, session=slow_session)
        fast = await Client.connect(api, run.tenant.token)
        slow_stream = await slow.logs(run)
        fast_stream = await fast.logs(run)
        await asyncio.sleep(0.1)
        big = "x" * 8000 + " {seq}"
        fast_task = asyncio.create_task(fast_stream.until(2400))
        for _ in range(12):
            await run.emit(200, size=100, message=big)
        await asyncio.wait_for(fast_task, 60)  # the fast one was never held up
        assert h.logs.overflows > overflows  # the slow one fell behind...
        await run.finish()
        await slow_stream.to_end()  # ...and caught up from the store, no gap, no duplicate
        assert slow_stream.seqs == list(range(1, 2401))
        await fast_stream.to_end()
        assert fast_stream.seqs == list(range(1, 2401))
        await slow.close()
        await fast.close()
    finally:
        reg.opts.max_buffer = old
        await slow_session.close()


async def test_run_state_change_without_subscribers_costs_nothing(api: Api) -> None:
    from server.logs.hub import hubs

    h = await hubs(api.platform)
    loads = h.runs.loads
    run = await start_run(api)
    async with api.platform.db.acquire() as conn:
        await state.transition(conn, run.run.id, RunStatus.CANCELLED)
    await asyncio.sleep(0.2)
    assert h.runs.loads == loads
