"""The hub in pull mode (as strawberry's default path would use it): sharing, overflow, holes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from server.logs import ingest
from server.logs.hub import LogBatch, LogSubscription, hubs
from server.logs.read import log_reader
from tests.logs.conftest import Api, LiveRun, start_run


async def _append(api: Api, run: LiveRun, seqs: list[int]) -> None:
    lines = [
        ingest.LogLineIn(seq=s, step=1, ts=datetime.now(UTC), level="info", message=f"m{s}")
        for s in seqs
    ]
    async with api.platform.db.acquire() as conn:
        await ingest.append(conn, run.run.id, run.run.account_id, lines)


async def _collect(sub: LogSubscription, until: int, out: list[LogBatch]) -> None:
    async for batch in sub:
        out.append(batch)
        if batch.cursor >= until or batch.done:
            return


async def _subscribe(api: Api, run: LiveRun, after: int = 0) -> LogSubscription:
    h = await hubs(api.platform)
    info = await log_reader(api.platform).info(run.run.id, run.run.account_id)
    assert info is not None
    return h.logs.subscribe(info, after)


async def test_live_batches_are_the_same_objects_for_everyone(api: Api) -> None:
    run = await start_run(api)
    subs = [await _subscribe(api, run) for _ in range(50)]
    outs: list[list[LogBatch]] = [[] for _ in subs]
    tasks = [asyncio.create_task(_collect(s, 30, o)) for s, o in zip(subs, outs, strict=True)]
    await asyncio.sleep(0.2)  # all caught up (nothing stored yet): live
    h = await hubs(api.platform)
    reads = h.logs.reads
    for i in range(10):
        await _append(api, run, [3 * i + 1, 3 * i + 2, 3 * i + 3])
        await asyncio.sleep(0.01)
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert all([ln.seq for b in o for ln in b.lines] == list(range(1, 31)) for o in outs)
    for batches in zip(*outs, strict=False):  # batch k is one object shared by all 50
        assert all(b is batches[0] for b in batches)
    assert h.logs.reads - reads <= 10  # one read per notification, not per subscriber
    for s in subs:
        s.close()


async def test_overflowing_subscriber_catches_up_from_the_store(api: Api) -> None:
    run = await start_run(api)
    h = await hubs(api.platform)
    old, h.logs.buffer = h.logs.buffer, 3
    try:
        sub = await _subscribe(api, run)
        first = await asyncio.wait_for(_first(sub, run, api), 10)
        assert first.lines[0].seq == 1
        for i in range(2, 40):  # nobody reads: the buffer of 3 overflows
            await _append(api, run, [i])
        await asyncio.sleep(0.5)
        assert sub.state == "catchup"
        rest: list[LogBatch] = []
        await asyncio.wait_for(_collect(sub, 39, rest), 10)
        assert [ln.seq for b in rest for ln in b.lines] == list(range(2, 40))
    finally:
        h.logs.buffer = old
    sub.close()


async def _first(sub: LogSubscription, run: LiveRun, api: Api) -> LogBatch:
    task = asyncio.ensure_future(sub.__anext__())
    await asyncio.sleep(0.1)
    await _append(api, run, [1])
    return await task


async def test_a_hole_is_waited_for_then_filled_in_order(api: Api) -> None:
    run = await start_run(api)
    sub = await _subscribe(api, run)
    out: list[LogBatch] = []
    task = asyncio.create_task(_collect(sub, 6, out))
    await asyncio.sleep(0.1)
    await _append(api, run, [1, 2])
    await _append(api, run, [5, 6])  # 3 and 4 are late
    await asyncio.sleep(0.3)
    await _append(api, run, [3, 4])
    await asyncio.wait_for(task, 10)
    assert [ln.seq for b in out for ln in b.lines] == [1, 2, 3, 4, 5, 6]
    sub.close()


async def test_a_hole_that_never_fills_does_not_stall(api: Api) -> None:
    run = await start_run(api)
    sub = await _subscribe(api, run)
    out: list[LogBatch] = []
    task = asyncio.create_task(_collect(sub, 5, out))
    await asyncio.sleep(0.1)
    await _append(api, run, [1, 2, 4, 5])
    await asyncio.wait_for(task, 10)
    assert [ln.seq for b in out for ln in b.lines] == [1, 2, 4, 5]
    sub.close()
