"""Job-completion triggers: job B runs when job A ends with one of B's chosen statuses.

Driven by ``run_events`` (final statuses) and, for events missed while no
scheduler listened, by a periodic scan of recently finished runs. Both paths
go through :func:`chain_run`, which creates B's run at most once per upstream
run: under a transaction-scoped advisory lock on B it checks that no
``job_completion`` run of B already names the upstream run.

Cycles (A → B → A) are refused when a trigger is configured
(:func:`check_no_cycle`), so a chain always ends.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import asyncpg

from server import metrics
from server.db import Database
from server.runs import state
from server.services.errors import ValidationFailed
from server.services.runs import RunOverrides, plan_steps

log = logging.getLogger("kiln.scheduler.chains")
CHAIN_LOCK_SPACE = 7_471_200  # advisory lock (space, downstream job id)
SCAN_WINDOW = timedelta(hours=1)

_DOWNSTREAM = """
SELECT j.id, j.account_id, j.project_id, j.environment_id, j.steps, j.generate_docs,
       j.run_freshness, j.timeout_seconds, j.priority, j.trigger_statuses, e.custom_branch
FROM job j JOIN environment e ON e.id = j.environment_id
WHERE j.trigger_job_id = $1 AND j.deleted_at IS NULL AND j.account_id = $2
"""

_INSERT = """
INSERT INTO run (account_id, project_id, environment_id, job_id, status, trigger_kind, cause,
                 previous_run_id, git_branch, steps_spec, overrides, timeout_seconds, priority,
                 attempt, created_at, updated_at, artifacts_saved, logs_archived, log_seq)
SELECT $1, $2, $3, $4, 1, 'job_completion', $5, $6, $7, $8::jsonb, '{}'::jsonb, $9, $10, 1,
       now(), now(), false, false, 0
WHERE NOT EXISTS (SELECT 1 FROM run WHERE job_id = $4 AND previous_run_id = $6
                  AND trigger_kind = 'job_completion')
RETURNING id, account_id, job_id, project_id, environment_id, status
"""


async def chain_run(conn: asyncpg.Connection, upstream: asyncpg.Record) -> list[int]:
    """Create the downstream runs that ``upstream`` (a finished run) triggers; their ids."""
    created: list[int] = []
    for job in await conn.fetch(_DOWNSTREAM, upstream["job_id"], upstream["account_id"]):
        statuses = (
            json.loads(job["trigger_statuses"])
            if isinstance(job["trigger_statuses"], str)
            else job["trigger_statuses"]
        )
        if int(upstream["status"]) not in {int(s) for s in statuses or []}:
            continue
        steps = json.loads(job["steps"]) if isinstance(job["steps"], str) else job["steps"]
        spec = plan_steps(
            _JobView(steps, job["run_freshness"], job["generate_docs"]), RunOverrides()
        )
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, $2)", CHAIN_LOCK_SPACE, job["id"] % 2**31
            )
            row = await conn.fetchrow(
                _INSERT,
                job["account_id"],
                job["project_id"],
                job["environment_id"],
                job["id"],
                f"Triggered by completion of run {upstream['id']}",
                upstream["id"],
                job["custom_branch"],
                json.dumps(spec),
                job["timeout_seconds"],
                job["priority"],
            )
            if row is not None:
                await state.notify(conn, state.RunEvent.of(row, "created"))
                created.append(row["id"])
                metrics.RUNS_CREATED.labels("job_completion").inc()
                log.info(
                    "chained run created",
                    extra={
                        "run_id": row["id"],
                        "job_id": job["id"],
                        "account_id": job["account_id"],
                        "upstream_run_id": upstream["id"],
                    },
                )
    return created


class _JobView:
    def __init__(self, steps: list[str], run_freshness: bool, generate_docs: bool) -> None:
        self.steps = steps
        self.run_freshness = run_freshness
        self.generate_docs = generate_docs


async def on_event(db: Database, event: state.RunEvent) -> list[int]:
    if event.kind != "status" or event.status < 10:
        return []
    async with db.acquire() as conn:
        run = await conn.fetchrow(
            "SELECT id, job_id, account_id, status FROM run WHERE id = $1", event.run
        )
        return await chain_run(conn, run) if run is not None else []


async def scan_recent(db: Database, now: datetime) -> list[int]:
    """Chain runs finished within SCAN_WINDOW whose downstream runs were never created."""
    created: list[int] = []
    async with db.acquire() as conn:
        rows = await conn.fetch(
            """SELECT r.id, r.job_id, r.account_id, r.status FROM run r
               WHERE r.status >= 10 AND r.finished_at > $1
                 AND EXISTS (SELECT 1 FROM job d WHERE d.trigger_job_id = r.job_id
                             AND d.deleted_at IS NULL)
               ORDER BY r.finished_at""",
            now - SCAN_WINDOW,
        )
        for run in rows:
            created += await chain_run(conn, run)
    return created


async def check_no_cycle(conn: asyncpg.Connection, job_id: int | None, trigger_job_id: int) -> None:
    """Refuse ``trigger_job_id`` as the trigger of ``job_id`` if it would close a loop."""
    if job_id is not None and trigger_job_id == job_id:
        raise ValidationFailed("a job cannot trigger itself", field="triggerJobId")
    seen: set[int] = set()
    current: int | None = trigger_job_id
    while current is not None and current not in seen:
        if job_id is not None and current == job_id:
            raise ValidationFailed(
                "this job-completion trigger would create a cycle", field="triggerJobId"
            )
        seen.add(current)
        current = await conn.fetchval(
            "SELECT trigger_job_id FROM job WHERE id = $1 AND deleted_at IS NULL", current
        )
