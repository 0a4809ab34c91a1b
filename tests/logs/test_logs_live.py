"""runLogs over real websockets against the real server and PostgreSQL."""

from __future__ import annotations

import asyncio

from tests.logs.conftest import LEGACY_WS, TRANSPORT_WS, Api, Client, start_run


async def test_join_mid_run_gets_every_line_once_in_order(api: Api, delivery: str) -> None:
    from server.logs.hub import hubs

    run = await start_run(api)
    await run.emit(40, size=7)
    client = await Client.connect(api, run.tenant.token)
    stream = await client.logs(run)
    shortcuts = (await hubs(api.platform)).logs.shortcuts

    async def produce() -> None:
        for _ in range(20):
            await run.emit(9, size=3)
            await asyncio.sleep(0.01)
        await run.finish()

    producer = asyncio.create_task(produce())
    await stream.to_end()
    await producer
    assert stream.seqs == list(range(1, 221))
    assert stream.completed
    first = stream.lines[0]
    assert first["message"] == "line 1" and first["level"] == "debug" and first["step"] == 1
    assert first["eventName"] == "LogLine" and first["nodeId"] == "model.shop.m1"
    used = (await hubs(api.platform)).logs.shortcuts > shortcuts
    assert used == (delivery == "shortcut")
    replay = await client.logs(run)  # what was sent live is what is stored
    await replay.to_end()
    assert replay.lines == stream.lines
    await client.close()


async def test_both_protocols_and_queries_over_the_socket(api: Api) -> None:
    run = await start_run(api)
    await run.emit(5)
    for protocol in (TRANSPORT_WS, LEGACY_WS):
        client = await Client.connect(api, run.tenant.token, protocol=protocol)
        op = await client.subscribe("query { version }", {})
        msg = await client.recv()
        assert msg["id"] == op and msg["payload"]["data"]["version"], msg
        assert (await client.recv())["type"] == "complete"
        stream = await client.logs(run)
        await stream.until(5)
        assert stream.seqs == [1, 2, 3, 4, 5]
        await client.stop(stream.op)
        await client.close()


async def test_200_subscribers_get_identical_complete_streams(api: Api, delivery: str) -> None:
    from server.gateway.graphql_ws import _REGISTRIES

    run = await start_run(api)
    await run.emit(30, size=10)
    clients = [await Client.connect(api, run.tenant.token) for _ in range(200)]
    streams = [await c.logs(run) for c in clients[:100]]  # these join before the next lines

    async def produce() -> None:
        for i in range(30):
            await run.emit(10, size=5)
            if i == 10:  # the others join mid-run, at different cursors
                for j, c in enumerate(clients[100:]):
                    streams.append(await c.logs(run, after=j % 40))
            await asyncio.sleep(0.005)
        await run.finish()

    reg = next(iter(_REGISTRIES.values()))
    executions, frames = reg.executions, reg.frames
    first = [asyncio.create_task(s.to_end()) for s in streams]
    await produce()
    await asyncio.gather(*first, *(s.to_end() for s in streams[100:]))
    expected = list(range(1, 331))
    reference = streams[0].lines
    assert [ln["seq"] for ln in reference] == expected
    for j, s in enumerate(streams):
        start = 0 if j < 100 else (j - 100) % 40
        assert s.lines == reference[start:], j
        assert s.completed
    # the selection was executed once per batch per group, not once per subscriber
    executed, sent = reg.executions - executions, reg.frames - frames
    assert sent >= 200 * 30
    assert executed < sent / 5, (executed, sent)
    await asyncio.gather(*(c.close() for c in clients))


async def test_resume_with_cursor_after_disconnect(api: Api) -> None:
    run = await start_run(api)
    await run.emit(25, size=5)
    client = await Client.connect(api, run.tenant.token)
    stream = await client.logs(run)
    await stream.until(25)
    cursor = stream.cursor
    got = stream.seqs
    await client.close()
    await run.emit(30, size=4)  # while nobody listens
    client = await Client.connect(api, run.tenant.token, protocol=LEGACY_WS)
    stream = await client.logs(run, after=cursor)
    await run.emit(10)
    await run.finish()
    await stream.to_end()
    assert got + stream.seqs == list(range(1, 66))
    await client.close()


async def test_killing_the_listen_connection_loses_nothing(api: Api, notify_only: None) -> None:
    from server.logs.hub import hubs

    run = await start_run(api)
    client = await Client.connect(api, run.tenant.token)
    stream = await client.logs(run)
    await run.emit(20, size=2)
    await stream.until(20)
    events = (await hubs(api.platform)).events
    reconnects = events.reconnects
    pid = events.connection.get_server_pid()
    async with api.platform.db.acquire() as conn:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    await run.emit(30, size=3)  # some of these NOTIFYs go nowhere
    for _ in range(100):
        if events.reconnects > reconnects:
            break
        await asyncio.sleep(0.05)
    assert events.reconnects > reconnects
    await run.emit(10)
    await run.finish()
    await stream.to_end()
    assert stream.seqs == list(range(1, 61))
    await client.close()


async def test_finished_run_replays_and_completes(api: Api) -> None:
    run = await start_run(api)
    await run.emit(1500, size=500)
    await run.finish()
    client = await Client.connect(api, run.tenant.token)
    stream = await client.logs(run, after=100)
    await stream.to_end()
    assert stream.seqs == list(range(101, 1501))
    empty = await start_run(api, run.tenant)
    await empty.finish("error")
    stream = await client.logs(empty)
    await stream.to_end()
    assert stream.batches == [{"cursor": 0, "done": True, "lines": []}]
    await client.close()
