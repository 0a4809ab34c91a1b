"""Run requests made through the API: trigger, cancel, retry, with their audit events.

The rules live in ``server.services.runs``; this adds the audit trail that
API callers leave (the scheduler and job chaining call ``runs`` directly).
"""

from __future__ import annotations

from server.db import Database
from server.models import Run
from server.services import audit, runs
from server.services.actor import Actor
from server.services.runs import RunOverrides


async def trigger(
    actor: Actor, job_id: int, *, cause: str = "", overrides: RunOverrides | None = None
) -> Run:
    run = await runs.trigger_run(
        actor,
        job_id,
        cause=cause,
        overrides=overrides,
        trigger_kind="manual" if actor.kind == "user" else "api",
    )
    await audit.record(actor, "run.trigger", "run", run.id, {"job_id": job_id})
    return run


async def cancel(actor: Actor, db: Database, run_id: int, *, reason: str = "") -> Run:
    run = await runs.cancel_run(actor, run_id, db, reason=reason)
    await audit.record(actor, "run.cancel", "run", run.id)
    return run


async def retry(actor: Actor, run_id: int, *, cause: str = "") -> Run:
    run = await runs.retry_run(actor, run_id, cause=cause)
    await audit.record(actor, "run.retry", "run", run.id, {"previous_run_id": run_id})
    return run
