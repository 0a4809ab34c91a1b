"""Archiving to the object store: identical replays, crash safety, every read path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.logs import archive
from server.logs.read import archive_key, log_reader
from server.models import Run
from tests.logs.conftest import Api, Client, LiveRun, start_run


async def _replay(api: Api, run: LiveRun) -> list[dict]:
    client = await Client.connect(api, run.tenant.token)
    stream = await client.logs(run)
    await stream.to_end()
    await client.close()
    return stream.lines


async def _text(api: Api, run: LiveRun) -> str:
    async with api.http.get(
        f"{api.url}/runs/{run.run.id}/logs.txt",
        headers={"Authorization": f"Bearer {run.tenant.token}"},
    ) as r:
        assert r.status == 200, await r.text()
        return await r.text()


async def _pages(api: Api, run: LiveRun, **filters) -> list[int]:
    reader = log_reader(api.platform)
    seqs: list[int] = []
    after = 0
    while True:
        page = await reader.page(run.run.id, run.run.account_id, first=70, after=after, **filters)
        seqs += [ln.seq for ln in page.lines]
        if not page.has_next:
            return seqs
        after = page.lines[-1].seq


LOGS_QUERY = """
query($r: ID!, $after: String, $level: String, $step: Int) { run(id: $r) {
  logs(first: 150, after: $after, level: $level, step: $step) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { seq step ts level message eventName nodeId } } } } }
"""


async def _graphql_pages(api: Api, run: LiveRun, **filters) -> tuple[list[dict], int]:
    """Every line through the ``run.logs`` connection over HTTP, page by page."""
    nodes: list[dict] = []
    after = None
    while True:
        async with api.http.post(
            f"{api.url}/graphql",
            json={"query": LOGS_QUERY, "variables": {"r": run.gid, "after": after, **filters}},
            headers={"Authorization": f"Bearer {run.tenant.token}"},
        ) as r:
            doc = await r.json()
        assert not doc.get("errors"), doc
        logs = doc["data"]["run"]["logs"]
        nodes += [e["node"] for e in logs["edges"]]
        if not logs["pageInfo"]["hasNextPage"]:
            return nodes, logs["totalCount"]
        after = logs["pageInfo"]["endCursor"]


async def _rows(api: Api, run_id: int) -> int:
    async with api.platform.db.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM log_line WHERE run_id = $1", run_id)


async def _finished_run(api: Api, n: int = 400) -> LiveRun:
    run = await start_run(api)
    await run.emit(n, size=100, message="line {seq}: ünïcode ✓ \"quoted\"\nsecond line")
    await run.finish()
    return run


async def test_archived_runs_replay_identically(api: Api) -> None:
    run = await _finished_run(api)
    before = await _replay(api, run)
    text_before = await _text(api, run)
    pages_before = await _pages(api, run)
    warn_before = await _pages(api, run, level="warn", step=2)
    gql_before = await _graphql_pages(api, run)
    gql_warn_before = await _graphql_pages(api, run, level="warn", step=2)
    assert gql_before[1] == 400 and [n["seq"] for n in gql_before[0]] == pages_before
    assert [n["seq"] for n in gql_warn_before[0]] == warn_before
    assert [ln["seq"] for ln in before] == list(range(1, 401)) == pages_before
    assert warn_before and all(s % 4 in (2, 3) and 100 <= s < 200 for s in warn_before)

    written = await archive.archive_run(
        api.platform.db, api.platform.store, run.run.id, run.run.account_id
    )
    assert written is not None and written.lines == 400
    assert await _rows(api, run.run.id) == 0
    assert (await Run.get(id=run.run.id)).logs_archived
    assert await api.platform.store.head(archive_key(run.run.account_id, run.run.id))

    assert await _replay(api, run) == before
    assert await _text(api, run) == text_before
    assert await _pages(api, run) == pages_before
    assert await _pages(api, run, level="warn", step=2) == warn_before
    assert await _graphql_pages(api, run) == gql_before
    assert await _graphql_pages(api, run, level="warn", step=2) == gql_warn_before
    reader = log_reader(api.platform)
    assert await reader.count(run.run.id, run.run.account_id) == 400
    # a second archiver finds nothing to do
    assert (
        await archive.archive_run(
            api.platform.db, api.platform.store, run.run.id, run.run.account_id
        )
        is None
    )


async def test_crash_between_write_and_delete_loses_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await _finished_run(api, 250)
    before = await _replay(api, run)
    old = datetime.now(UTC) - timedelta(hours=1)
    await Run.filter(id=run.run.id).update(finished_at=old)

    async def crash(*_a: object, **_k: object) -> bool:
        raise RuntimeError("killed between write and delete")

    monkeypatch.setattr(archive, "commit", crash)
    s = api.platform.settings
    result = await archive.archive_pass(
        api.platform.db, api.platform.store, datetime.now(UTC), s.log_archive_after
    )
    assert result.failed >= 1
    key = archive_key(run.run.account_id, run.run.id)
    assert await api.platform.store.head(key) is not None  # written...
    assert await _rows(api, run.run.id) == 250  # ...but the rows stay
    assert not (await Run.get(id=run.run.id)).logs_archived
    assert await _replay(api, run) == before

    monkeypatch.undo()
    result = await archive.archive_pass(
        api.platform.db, api.platform.store, datetime.now(UTC), s.log_archive_after
    )
    assert result.failed == 0 and result.runs >= 1
    assert await _rows(api, run.run.id) == 0
    assert (await Run.get(id=run.run.id)).logs_archived
    assert await _replay(api, run) == before


async def test_recent_and_running_runs_are_not_archived(api: Api) -> None:
    running = await start_run(api)
    await running.emit(5)
    recent = await _finished_run(api, 5)
    s = api.platform.settings
    await archive.archive_pass(
        api.platform.db, api.platform.store, datetime.now(UTC), s.log_archive_after
    )
    assert await _rows(api, running.run.id) == 5
    assert await _rows(api, recent.run.id) == 5


async def test_a_late_line_aborts_the_delete(api: Api) -> None:
    run = await _finished_run(api, 20)
    w = await archive.write(api.platform.db, api.platform.store, run.run.id, run.run.account_id)
    await archive.verify(api.platform.store, w)
    async with api.platform.db.acquire() as conn:  # a line the archive does not have
        await conn.execute(
            "INSERT INTO log_line (run_id, seq, account_id, ts, message) VALUES ($1, 21, $2,"
            " now(), 'late')",
            run.run.id,
            run.run.account_id,
        )
    with pytest.raises(archive.ArchiveMismatch):
        await archive.commit(api.platform.db, run.run.id, w)
    assert await _rows(api, run.run.id) == 21
    assert await archive.archive_run(
        api.platform.db, api.platform.store, run.run.id, run.run.account_id
    )
    assert [ln["seq"] for ln in await _replay(api, run)] == list(range(1, 22))


async def test_the_scheduler_archives_as_leader_only(api: Api) -> None:
    from server.events import EventListener
    from server.scheduler.process import build_scheduler

    run = await _finished_run(api, 12)
    await Run.filter(id=run.run.id).update(finished_at=datetime.now(UTC) - timedelta(hours=2))
    events = EventListener(api.platform.db)
    sched = build_scheduler(api.platform, events)
    task = sched.task("log-archive")
    assert await task.fn() is None  # not the leader: nothing happens
    assert await _rows(api, run.run.id) == 12
    sched.leadership.is_leader = True
    result = await task.fn()
    assert result.runs >= 1
    assert await _rows(api, run.run.id) == 0
    assert [ln["seq"] for ln in await _replay(api, run)] == list(range(1, 13))
