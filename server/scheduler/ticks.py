"""Cron evaluation: turn due schedule ticks into queued runs, exactly once per tick.

Per job the row keeps ``last_tick_at`` (the newest tick already evaluated),
``next_tick_at`` (when to look again) and ``schedule_epoch`` (set when the
cron is edited: ticks before it never fire). One pass:

1. Lock the due jobs (``next_tick_at <= now`` or unknown) with
   ``FOR NO KEY UPDATE SKIP LOCKED``, so two evaluators never share a job and
   run inserts (which take a key-share lock on the job) are not blocked.
2. For each job, the ticks in ``(max(last_tick_at, schedule_epoch), now]``
   are computed in the job's time zone. Ticks within ``ON_TIME`` of now are
   on time; older ones were missed (downtime). Catch-up policy ``latest``
   fires the newest ``catchup_cap`` ticks; ``none`` fires only an on-time one.
3. Runs are inserted with ``ON CONFLICT (job_id, scheduled_for) DO NOTHING``:
   the unique key makes a repeated pass (after a crash between insert and
   commit, or a second evaluator) a no-op. Older still-queued scheduled runs
   of the job are cancelled first (dbt Cloud's over-scheduling rule);
   API-triggered runs are never touched.
4. ``last_tick_at``/``next_tick_at`` are updated in the same transaction.

A restart therefore neither skips (``last_tick_at`` is only advanced with
the runs it implies) nor repeats (the unique key) a tick.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg

from server import metrics
from server.db import Database
from server.models import RunStatus
from server.runs import state
from server.scheduler.cron import fire_times, next_after, parse_schedule
from server.services.errors import ValidationFailed
from server.services.runs import RunOverrides, plan_steps

log = logging.getLogger("kiln.scheduler.ticks")

ON_TIME = timedelta(seconds=90)
MAX_LOOKBACK = timedelta(days=31)
BATCH = 1000

_DUE_JOBS = """
SELECT j.id, j.account_id, j.project_id, j.environment_id, j.cron, j.timezone, j.catchup,
       j.catchup_cap, j.schedule_epoch, j.last_tick_at, j.created_at, j.steps, j.generate_docs,
       j.run_freshness, j.timeout_seconds, j.priority, e.custom_branch
FROM job j JOIN environment e ON e.id = j.environment_id
WHERE j.cron IS NOT NULL AND j.deleted_at IS NULL AND e.deleted_at IS NULL
  AND (j.next_tick_at IS NULL OR j.next_tick_at <= $1)
ORDER BY j.next_tick_at NULLS FIRST, j.id
LIMIT $2
FOR NO KEY UPDATE OF j SKIP LOCKED
"""

_INSERT_RUN = """
INSERT INTO run (account_id, project_id, environment_id, job_id, status, trigger_kind, cause,
                 git_branch, steps_spec, overrides, timeout_seconds, priority, scheduled_for,
                 attempt, created_at, updated_at, artifacts_saved, logs_archived, log_seq)
VALUES ($1, $2, $3, $4, 1, 'schedule', 'Triggered by schedule', $5, $6::jsonb, '{}'::jsonb,
        $7, $8, $9, 1, now(), now(), false, false, 0)
ON CONFLICT (job_id, scheduled_for) DO NOTHING
RETURNING id, account_id, job_id, project_id, environment_id, status
"""

_SUPERSEDED = """
SELECT id FROM run
WHERE job_id = $1 AND status = 1 AND trigger_kind = 'schedule' AND scheduled_for < $2
"""


@dataclass
class TickPass:
    jobs: int = 0
    created: int = 0
    superseded: int = 0
    invalid: int = 0


def _ticks_to_fire(job: Any, now: datetime) -> tuple[list[datetime], datetime | None, Any]:
    """(ticks to fire, newest tick evaluated, trigger) for one job row."""
    trigger = parse_schedule(job["cron"], job["timezone"] or "UTC")
    since = max(
        t
        for t in (job["last_tick_at"], job["schedule_epoch"], job["created_at"], now - MAX_LOOKBACK)
        if t is not None
    )
    cap = max(1, job["catchup_cap"] or 1)
    due = fire_times(trigger, since, now, limit=max(cap, 1))
    if not due:
        return [], None, trigger
    newest = due[-1]
    if job["catchup"] == "none":
        fire = [t for t in due if now - t <= ON_TIME][-1:]
    else:  # latest
        fire = due[-cap:]
    return fire, newest, trigger


async def evaluate(db: Database, now: datetime, *, batch: int = BATCH) -> TickPass:
    """Evaluate every due job once at ``now``; returns what was done."""
    result = TickPass()
    while True:
        async with db.acquire() as conn, conn.transaction():
            jobs = await conn.fetch(_DUE_JOBS, now, batch)
            for job in jobs:
                await _evaluate_job(conn, job, now, result)
        result.jobs += len(jobs)
        if len(jobs) < batch:
            return result


async def _evaluate_job(
    conn: asyncpg.Connection, job: Any, now: datetime, result: TickPass
) -> None:
    try:
        fire, newest, trigger = _ticks_to_fire(job, now)
    except ValidationFailed as exc:
        # a bad schedule stored by an older version: park it instead of retrying every pass
        result.invalid += 1
        log.error(
            "job has an invalid schedule: %s",
            exc.message,
            extra={"job_id": job["id"], "account_id": job["account_id"]},
        )
        await conn.execute(
            "UPDATE job SET next_tick_at = $2 WHERE id = $1", job["id"], now + timedelta(days=1)
        )
        return
    if fire:
        superseded = await conn.fetch(_SUPERSEDED, job["id"], fire[-1])
        for row in superseded:
            if await state.transition(
                conn,
                row["id"],
                RunStatus.CANCELLED,
                expected=(RunStatus.QUEUED,),
                message="Superseded by a newer scheduled run",
            ):
                result.superseded += 1
        spec = json.dumps(
            plan_steps(
                SimpleNamespace(
                    steps=json.loads(job["steps"])
                    if isinstance(job["steps"], str)
                    else job["steps"],
                    run_freshness=job["run_freshness"],
                    generate_docs=job["generate_docs"],
                ),
                RunOverrides(),
            )
        )
        for tick in fire:
            row = await conn.fetchrow(
                _INSERT_RUN,
                job["account_id"],
                job["project_id"],
                job["environment_id"],
                job["id"],
                job["custom_branch"],
                spec,
                job["timeout_seconds"],
                job["priority"],
                tick,
            )
            if row is not None:
                result.created += 1
                metrics.RUNS_CREATED.labels("schedule").inc()
                metrics.TICK_LAG.observe(max(0.0, (now - tick).total_seconds()))
                await state.notify(conn, state.RunEvent.of(row, "created"))
    nxt = next_after(trigger, now)
    await conn.execute(
        "UPDATE job SET last_tick_at = COALESCE($2, last_tick_at), next_tick_at = $3 WHERE id = $1",
        job["id"],
        newest,
        nxt,
    )
