"""The run state machine: conditional transitions, one winner per race, events."""

from __future__ import annotations

import asyncio
import json

import pytest

from server.models import Run, RunStatus
from server.runs import state
from server.services import runs
from server.services.errors import Conflict, Forbidden, NotFound, ValidationFailed
from tests.factories import make_tenant


async def test_trigger_notifies_and_cancel_of_queued_run(platform) -> None:
    t = await make_tenant()
    listener = await platform.db.connect()
    events: asyncio.Queue[dict] = asyncio.Queue()
    await listener.add_listener(state.CHANNEL, lambda *a: events.put_nowait(json.loads(a[3])))
    try:
        run = await runs.trigger_run(t.actor(), t.job.id, cause="test")
        assert run.status == RunStatus.QUEUED and run.steps_spec == [
            {"command": "dbt build", "kind": "dbt"}
        ]
        ev = await asyncio.wait_for(events.get(), 5)
        assert ev["run"] == run.id and ev["kind"] == "created" and ev["account"] == t.account.id
        cancelled = await runs.cancel_run(t.actor(), run.id, platform.db)
        assert cancelled.status == RunStatus.CANCELLED and cancelled.finished_at is not None
        ev = await asyncio.wait_for(events.get(), 5)
        assert ev["status"] == 30 and ev["kind"] == "status"
        with pytest.raises(Conflict):
            await runs.retry_run(t.actor(), run.id)
    finally:
        await listener.close()


async def test_transition_races_have_one_winner(platform) -> None:
    t = await make_tenant()
    run = await runs.trigger_run(t.actor(), t.job.id)
    async with platform.db.acquire() as c:
        assert await state.transition(c, run.id, RunStatus.STARTING) is not None
        assert await state.transition(c, run.id, RunStatus.RUNNING) is not None

    async def attempt(to: RunStatus):
        async with platform.db.acquire() as c:
            return await state.transition(c, run.id, to, message=to.name)

    results = await asyncio.gather(
        *(attempt(s) for s in [RunStatus.SUCCESS, RunStatus.CANCELLED, RunStatus.ERROR] * 3)
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    final = await Run.get(id=run.id)
    assert final.status == winners[0]["status"] and final.worker_token_hash is None
    async with platform.db.acquire() as c:  # final is final
        assert await state.transition(c, run.id, RunStatus.ERROR) is None
    with pytest.raises(ValueError):
        async with platform.db.acquire() as c:
            await state.transition(c, run.id, RunStatus.SUCCESS, expected=(RunStatus.QUEUED,))


async def test_rules_and_scoping(platform) -> None:
    a, b = await make_tenant(), await make_tenant()
    with pytest.raises(NotFound):
        await runs.trigger_run(a.actor(), b.job.id)
    with pytest.raises(Forbidden):
        await runs.trigger_run(a.actor("viewer"), a.job.id)
    with pytest.raises(ValidationFailed):
        await runs.trigger_run(a.actor(), a.job.id, overrides=runs.RunOverrides(steps=["rm -rf /"]))
    with pytest.raises(ValidationFailed):
        await runs.trigger_run(
            a.actor(), a.job.id, overrides=runs.RunOverrides(steps=["dbt run --profiles-dir /etc"])
        )
    run = await runs.trigger_run(
        a.actor("job_runner"),
        a.job.id,
        overrides=runs.RunOverrides(steps=["dbt seed", "dbt run -s x"], threads=2),
    )
    assert [s["command"] for s in run.steps_spec] == ["dbt seed", "dbt run -s x"]
    assert run.overrides == {"steps": ["dbt seed", "dbt run -s x"], "threads": 2}
    with pytest.raises(NotFound):
        await runs.cancel_run(b.actor(), run.id, platform.db)
