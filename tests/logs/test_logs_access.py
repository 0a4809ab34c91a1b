"""Who may subscribe: the same rules as queries; gql's websocket client on both protocols."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from gql import Client as GqlClient
from gql import gql
from gql.transport.websockets import WebsocketsTransport

from server.ids import to_global_id
from tests.logs.conftest import (
    LEGACY_WS,
    RUN_LOGS,
    TRANSPORT_WS,
    Api,
    Client,
    start_run,
)


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_gql_client_streams_run_logs(api: Api, protocol: str) -> None:
    run = await start_run(api)
    await run.emit(12, size=4)
    transport = WebsocketsTransport(
        url=api.ws_url,
        init_payload={"authorization": f"Bearer {run.tenant.token}"},
        subprotocols=[protocol],
    )
    seqs: list[int] = []
    async with GqlClient(transport=transport) as session:
        version = await session.execute(gql("query { version }"))
        assert version["version"]

        async def finish_later() -> None:
            await asyncio.sleep(0.2)
            await run.emit(8)
            await run.finish()

        task = asyncio.create_task(finish_later())
        async for result in session.subscribe(
            gql(RUN_LOGS), variable_values={"run": run.gid, "after": 0}
        ):
            batch = result["runLogs"]
            seqs += [ln["seq"] for ln in batch["lines"]]
        await task
    assert seqs == list(range(1, 21)) and batch["done"]


async def test_other_accounts_run_is_refused_like_a_query(api: Api) -> None:
    mine = await start_run(api)
    theirs = await start_run(api)  # another tenant, another account
    await theirs.emit(3)
    client = await Client.connect(api, mine.tenant.token)
    for query, variables in (
        (RUN_LOGS, {"run": theirs.gid}),
        ("subscription($r: ID!) { runUpdated(runId: $r) { id } }", {"r": theirs.gid}),
        (
            "subscription($j: ID!) { runsUpdated(jobId: $j) { id } }",
            {"j": to_global_id("Job", theirs.tenant.job.id)},
        ),
    ):
        op = await client.subscribe(query, variables)
        msg = await client.recv()
        assert msg["type"] == "error" and msg["id"] == op, msg
        assert msg["payload"][0]["extensions"]["code"] == "NOT_FOUND", msg
    op = await client.subscribe(RUN_LOGS, {"run": "not-an-id"})
    msg = await client.recv()
    assert msg["type"] == "error" and msg["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # the same run through a query is simply not there
    op = await client.subscribe("query($r: ID!) { run(id: $r) { id } }", {"r": theirs.gid})
    msg = await client.recv()
    assert msg["payload"] == {"data": {"run": None}}, msg
    await client.close()


async def test_missing_and_invalid_credentials(api: Api) -> None:
    run = await start_run(api)
    anonymous = await Client.connect(api, None)
    await anonymous.subscribe(RUN_LOGS, {"run": run.gid})
    msg = await anonymous.recv()
    assert msg["type"] == "error"
    assert msg["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    await anonymous.close()

    for protocol in (TRANSPORT_WS, LEGACY_WS):
        ws = await api.http.ws_connect(api.ws_url, protocols=[protocol])
        await ws.send_str(
            json.dumps({"type": "connection_init", "payload": {"token": "kiln_nope"}})
        )
        msg = await ws.receive(timeout=10)
        if protocol == TRANSPORT_WS:
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4403
        else:
            assert json.loads(msg.data)["type"] == "connection_error"
        await ws.close()

    # the Authorization header of the upgrade request works too
    client = await Client.connect(
        api, None, payload={}, headers={"Authorization": f"Bearer {run.tenant.token}"}
    )
    stream = await client.logs(run)
    await run.emit(2)
    await stream.until(2)
    await client.close()


async def test_protocol_rules(api: Api) -> None:
    run = await start_run(api)
    ws = await api.http.ws_connect(api.ws_url, protocols=[TRANSPORT_WS])
    await ws.send_str(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{x}"}}))
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401  # subscribe before init
    client = await Client.connect(api, run.tenant.token)
    await client.logs(run)
    await client.send(
        {"id": "1", "type": "subscribe", "payload": {"query": RUN_LOGS, "variables": {}}}
    )
    msg = await client.recv()
    assert msg["type"] == "closed" and msg["code"] == 4409  # duplicate id
    client = await Client.connect(api, run.tenant.token)
    await client.send({"type": "connection_init", "payload": {}})
    assert (await client.recv())["code"] == 4429
    client = await Client.connect(api, run.tenant.token)
    await client.send({"type": "ping", "payload": {"n": 1}})
    msg = json.loads((await client.ws.receive(timeout=10)).data)
    assert msg == {"type": "pong", "payload": {"n": 1}}
    await client.close()


async def test_logs_download(api: Api) -> None:
    run = await start_run(api)
    await run.emit(3, message="hello {seq}")
    other = await start_run(api)
    url = f"{api.url}/runs/{run.run.id}/logs.txt"
    async with api.http.get(url) as r:
        assert r.status == 401
    async with api.http.get(url, headers={"Authorization": f"Bearer {other.tenant.token}"}) as r:
        assert r.status == 404
    gid_url = f"{api.url}/runs/{run.gid}/logs.txt"
    async with api.http.get(gid_url, headers={"Authorization": f"Token {run.tenant.token}"}) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        lines = (await r.text()).splitlines()
    assert len(lines) == 3 and lines[0].endswith("hello 1") and "[debug]" in lines[0]


async def test_browser_session_cookie_same_origin_only(api: Api) -> None:
    from server.services.auth import SESSION_COOKIE, login

    run = await start_run(api)
    await run.emit(2)
    session = await login(run.tenant.user.email, "password-123")
    host = api.url.removeprefix("http://")
    cookie = {"Cookie": f"{SESSION_COOKIE}={session.secret}"}
    client = await Client.connect(api, None, payload={}, headers={**cookie, "Origin": api.url})
    stream = await client.logs(run)
    await stream.until(2)
    await client.close()
    ws = await api.http.ws_connect(
        api.ws_url, protocols=[TRANSPORT_WS], headers={**cookie, "Origin": "https://evil.example"}
    )
    await ws.send_str(json.dumps({"type": "connection_init", "payload": {}}))
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4403, (msg, host)
    await ws.close()


async def test_non_resumable_slow_consumer_is_closed_with_a_reason(api: Api) -> None:
    from graph.schema import schema
    from server.gateway.graphql_ws import registry_of

    run = await start_run(api)
    reg = registry_of(schema)
    old = reg.opts.max_buffer
    reg.opts.max_buffer = -1  # every write counts as backed up
    try:
        client = await Client.connect(api, run.tenant.token)
        await client.subscribe(
            "subscription($r: ID!) { runUpdated(runId: $r) { id } }", {"r": run.gid}
        )
        await asyncio.sleep(0.2)
        await run.post("steps", {"steps": [{"index": 1, "name": "dbt build", "status": 3}]})
        msg = await client.recv()
        assert msg["type"] == "closed" and msg["code"] == 1013, msg
        assert "slow consumer" in str(msg["msg"].extra), msg
    finally:
        reg.opts.max_buffer = old
