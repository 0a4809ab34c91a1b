"""Cron evaluation with a controllable clock: exact tick counts, restarts, catch-up, edits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.models import Job, Run, RunStatus
from server.scheduler import ticks
from server.scheduler.cron import fire_times, parse_schedule
from server.services.errors import ValidationFailed
from server.services.runs import trigger_run
from tests.factories import make_tenant

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


async def _scheduled_job(cron: str, *, catchup: str = "latest", cap: int = 1, tz: str = "UTC"):
    t = await make_tenant()
    await Job.filter(id=t.job.id).update(
        cron=cron,
        timezone=tz,
        catchup=catchup,
        catchup_cap=cap,
        schedule_epoch=T0 - timedelta(seconds=1),
        created_at=T0 - timedelta(days=1),
        last_tick_at=None,
        next_tick_at=None,
    )
    return t


async def _sweep(platform, start: datetime, end: datetime, step: timedelta) -> None:
    now = start
    while now <= end:
        await ticks.evaluate(platform.db, now)
        now += step


async def _ticks_of(job_id: int) -> list[datetime]:
    return sorted(r.scheduled_for for r in await Run.filter(job_id=job_id, trigger_kind="schedule"))


async def test_every_five_minutes_over_an_hour_fires_twelve_runs(platform) -> None:
    t = await _scheduled_job("*/5 * * * *")
    # the first pass at T0 fires the T0 tick (on time); passes every 7 s until T0+59:59
    await _sweep(platform, T0, T0 + timedelta(minutes=59, seconds=59), timedelta(seconds=7))
    got = await _ticks_of(t.job.id)
    assert got == [T0 + timedelta(minutes=5 * i) for i in range(12)]
    # nothing dispatched them, so each new tick superseded the queued one before it
    statuses = [r.status for r in await Run.filter(job_id=t.job.id).order_by("scheduled_for")]
    assert statuses == [RunStatus.CANCELLED] * 11 + [RunStatus.QUEUED]
    # a second evaluator at the same instants creates nothing more
    await _sweep(platform, T0, T0 + timedelta(minutes=59, seconds=59), timedelta(seconds=61))
    assert len(await _ticks_of(t.job.id)) == 12


async def test_restart_in_the_middle_neither_skips_nor_repeats(platform) -> None:
    t = await _scheduled_job("*/5 * * * *")
    await _sweep(platform, T0, T0 + timedelta(minutes=22), timedelta(seconds=30))
    # "restart": nothing is kept in memory; resume 20 s later
    await _sweep(
        platform,
        T0 + timedelta(minutes=22, seconds=20),
        T0 + timedelta(minutes=59),
        timedelta(seconds=30),
    )
    assert await _ticks_of(t.job.id) == [T0 + timedelta(minutes=5 * i) for i in range(12)]


async def test_catch_up_policies_after_downtime(platform) -> None:
    latest = await _scheduled_job("*/5 * * * *", catchup="latest")
    capped = await _scheduled_job("*/5 * * * *", catchup="latest", cap=3)
    none = await _scheduled_job("*/5 * * * *", catchup="none")
    await ticks.evaluate(platform.db, T0)  # T0 fires for all three
    # down from T0+1m to T0+43m: ticks 5..40 were missed; 40 is 3 minutes old
    await ticks.evaluate(platform.db, T0 + timedelta(minutes=43))
    assert await _ticks_of(latest.job.id) == [T0, T0 + timedelta(minutes=40)]
    assert await _ticks_of(capped.job.id) == [T0] + [
        T0 + timedelta(minutes=m) for m in (30, 35, 40)
    ]
    assert await _ticks_of(none.job.id) == [T0]
    await ticks.evaluate(platform.db, T0 + timedelta(minutes=45, seconds=10))
    assert (await _ticks_of(none.job.id))[-1] == T0 + timedelta(minutes=45)


async def test_editing_the_cron_never_refires_past_ticks(platform) -> None:
    t = await _scheduled_job("0 * * * *")
    await ticks.evaluate(platform.db, T0 + timedelta(minutes=30))  # 10:00 is 30 min old: latest
    assert await _ticks_of(t.job.id) == [T0]
    # edit at 10:30 to every 10 minutes: 10:10 and 10:20 are in the past and must not fire
    edit = T0 + timedelta(minutes=30)
    await Job.filter(id=t.job.id).update(
        cron="*/10 * * * *", schedule_epoch=edit, next_tick_at=None
    )
    await ticks.evaluate(platform.db, edit + timedelta(seconds=5))
    assert await _ticks_of(t.job.id) == [T0]
    await ticks.evaluate(platform.db, T0 + timedelta(minutes=40, seconds=3))
    assert await _ticks_of(t.job.id) == [T0, T0 + timedelta(minutes=40)]


async def test_time_zone_and_invalid_schedules(platform) -> None:
    trig = parse_schedule("0 9 * * *", "Europe/Berlin")
    fired = fire_times(
        trig, datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC), 10
    )
    # 09:00 Berlin is 08:00 UTC before the DST switch (29 March) and 07:00 UTC after
    assert [f.astimezone(UTC).hour for f in fired] == [8, 7, 7]
    for bad, tz in [("* * *", "UTC"), ("61 * * * *", "UTC"), ("0 9 * * *", "Mars/Olympus")]:
        with pytest.raises(ValidationFailed):
            parse_schedule(bad, tz)
    assert parse_schedule("@hourly") is not None


async def test_over_scheduling_cancels_only_queued_scheduled_runs(platform) -> None:
    t = await _scheduled_job("*/5 * * * *")
    await ticks.evaluate(platform.db, T0)
    api_run = await trigger_run(t.actor(), t.job.id, trigger_kind="api")
    await ticks.evaluate(platform.db, T0 + timedelta(minutes=5, seconds=1))
    runs = {r.id: r for r in await Run.filter(job_id=t.job.id)}
    assert runs[api_run.id].status == RunStatus.QUEUED
    sched = sorted(
        (r for r in runs.values() if r.trigger_kind == "schedule"), key=lambda r: r.scheduled_for
    )
    assert [r.status for r in sched] == [RunStatus.CANCELLED, RunStatus.QUEUED]
    assert "Superseded" in (sched[0].status_message or "")
