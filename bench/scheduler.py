"""Scheduler benchmark: 500 jobs due on the same minute.

Measures, on a scratch database: the time from the tick to all runs
created (one cron pass), the scheduler's CPU per 1,000 jobs evaluated, and,
when the dispatcher is available, the time until every run is dispatched to
a launcher that does nothing (so only Kiln's own work is timed).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import row, scratch_database
from server import crypto
from server.config import load_settings
from server.models import Account, Environment, Job, Project, Run
from server.platform import Platform
from server.scheduler import ticks

GROUP = "Scheduler"


async def _seed(n_jobs: int, tick: datetime) -> None:
    account = await Account.create(name="bench", run_slots=n_jobs)
    project = await Project.create(account=account, name="p", bundled_path="/nonexistent")
    env = await Environment.create(account=account, project=project, name="prod")
    await Job.bulk_create(
        [
            Job(
                account=account,
                project=project,
                environment=env,
                name=f"job-{i}",
                steps=["dbt build"],
                cron="* * * * *",
                schedule_epoch=tick - timedelta(seconds=1),
                created_at=tick - timedelta(days=1),
            )
            for i in range(n_jobs)
        ]
    )


async def _dispatch_all(platform: Platform, n: int) -> float | None:
    try:
        from bench.noop_dispatch import dispatch_until_done  # provided with the dispatcher
    except ImportError:
        return None
    return await dispatch_until_done(platform, n)


async def run(quick: bool) -> list[dict[str, Any]]:
    n = 500
    tick = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=5)
    async with scratch_database() as url:
        settings = load_settings(
            {
                "KILN_DATABASE_URL": url,
                "KILN_SECRET_KEY": crypto.generate_key(),
                "KILN_DATA_DIR": "/tmp/kiln-bench-scheduler",
            }
        )
        platform = await Platform.open(settings, apply_migrations=False)
        try:
            await _seed(n, tick)
            cpu0, t0 = time.process_time(), time.perf_counter()
            result = await ticks.evaluate(platform.db, tick + timedelta(milliseconds=5))
            created_s = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            assert result.created == n and await Run.all().count() == n, result
            dispatched_s = await _dispatch_all(platform, n)
        finally:
            await platform.close()
    rows = [
        row(
            GROUP,
            f"{n} jobs due: tick to all runs created",
            "s",
            created_s,
            goal="<= 2 s",
            met=created_s <= 2.0,
        ),
        row(GROUP, "scheduler CPU per 1,000 jobs evaluated", "s", cpu * 1000 / n, goal="report"),
    ]
    rows.append(
        row(
            GROUP,
            f"{n} jobs due: tick to all dispatched",
            "s",
            None if dispatched_s is None else created_s + dispatched_s,
            goal="<= 10 s",
            met=None if dispatched_s is None else created_s + dispatched_s <= 10.0,
        )
    )
    return rows


if __name__ == "__main__":
    for r in asyncio.run(run(quick=True)):
        print(r)
