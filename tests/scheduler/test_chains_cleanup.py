"""Job-completion chains (exactly once, status filter, cycles) and retention."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from server.models import Artifact, Environment, Job, Run, RunStatus
from server.runs import state
from server.scheduler import chains, cleanup
from server.services.errors import ValidationFailed
from server.services.runs import trigger_run
from tests.factories import make_tenant


async def _finish(platform, run_id: int, status: RunStatus) -> None:
    async with platform.db.acquire() as c:
        await state.transition(c, run_id, RunStatus.STARTING)
        await state.transition(c, run_id, RunStatus.RUNNING)
        assert await state.transition(c, run_id, status) is not None


async def _downstream(t, statuses: list[int], upstream: Job) -> Job:
    env = await Environment.get(id=t.environment.id)
    return await Job.create(
        account_id=t.account.id,
        project_id=t.project.id,
        environment=env,
        name=f"after-{upstream.id}",
        steps=["dbt test"],
        trigger_job=upstream,
        trigger_statuses=statuses,
    )


async def test_success_chains_once_and_error_does_not(platform) -> None:
    t = await make_tenant()
    on_success = await _downstream(t, [10], t.job)
    on_any = await _downstream(t, [10, 20], t.job)

    ok = await trigger_run(t.actor(), t.job.id)
    await _finish(platform, ok.id, RunStatus.SUCCESS)
    event = state.RunEvent(
        ok.id, t.account.id, t.job.id, t.project.id, t.environment.id, 10, "status"
    )
    # the same event delivered to three schedulers at once, plus the periodic scan
    created = await asyncio.gather(*(chains.on_event(platform.db, event) for _ in range(3)))
    assert sum(len(c) for c in created) == 2
    assert await chains.scan_recent(platform.db, datetime.now(UTC)) == []
    b_runs = await Run.filter(job_id=on_success.id)
    assert len(b_runs) == 1 and b_runs[0].trigger_kind == "job_completion"
    assert b_runs[0].previous_run_id == ok.id and b_runs[0].steps_spec[0]["command"] == "dbt test"

    bad = await trigger_run(t.actor(), t.job.id)
    await _finish(platform, bad.id, RunStatus.ERROR)
    # missed event: only the scan sees it
    await chains.scan_recent(platform.db, datetime.now(UTC))
    assert await Run.filter(job_id=on_success.id).count() == 1
    assert await Run.filter(job_id=on_any.id).count() == 2


async def test_cycles_are_refused(platform) -> None:
    t = await make_tenant()
    b = await _downstream(t, [10], t.job)  # job -> b
    c = await _downstream(t, [10], b)  # b -> c
    async with platform.db.acquire() as conn:
        with pytest.raises(ValidationFailed):
            await chains.check_no_cycle(conn, t.job.id, c.id)  # c -> job closes the loop
        with pytest.raises(ValidationFailed):
            await chains.check_no_cycle(conn, b.id, b.id)
        await chains.check_no_cycle(conn, c.id, t.job.id)  # fine: no loop


async def test_retention_deletes_exactly_the_old_finished_runs(platform) -> None:
    t = await make_tenant()
    store = platform.store
    now = datetime.now(UTC)
    old_done = await trigger_run(t.actor(), t.job.id)
    await _finish(platform, old_done.id, RunStatus.SUCCESS)
    old_running = await trigger_run(t.actor(), t.job.id)
    async with platform.db.acquire() as c:
        await state.transition(c, old_running.id, RunStatus.STARTING)
        await state.transition(c, old_running.id, RunStatus.RUNNING)
    recent = await trigger_run(t.actor(), t.job.id)
    await _finish(platform, recent.id, RunStatus.ERROR)
    await Run.filter(id__in=[old_done.id, old_running.id]).update(
        created_at=now - timedelta(days=100), finished_at=now - timedelta(days=95)
    )
    await Run.filter(id=old_running.id).update(finished_at=None)
    for r in (old_done, recent):
        key = f"artifacts/{t.account.id}/{r.id}/1/manifest.json"
        info = await store.put(key, b"{}")
        await Artifact.create(
            account_id=t.account.id,
            run_id=r.id,
            step_index=1,
            path="manifest.json",
            size=info.size,
            sha256=info.sha256,
            object_key=key,
        )
    await store.put(f"logs/{t.account.id}/{old_done.id}.jsonl.gz", b"x")

    result = await cleanup.retention(platform.db, store, now, days=90)
    assert result.runs >= 1
    assert not await Run.exists(id=old_done.id)
    assert await Run.exists(id=old_running.id) and await Run.exists(id=recent.id)
    assert not await Artifact.exists(run_id=old_done.id)
    assert await store.head(f"artifacts/{t.account.id}/{old_done.id}/1/manifest.json") is None
    assert await store.head(f"logs/{t.account.id}/{old_done.id}.jsonl.gz") is None
    assert await store.head(f"artifacts/{t.account.id}/{recent.id}/1/manifest.json") is not None
