"""Jobs: a named list of dbt steps in a deployment environment, with a schedule and triggers.

Steps are validated as dbt commands (``dbt_commands``), a cron schedule with
apscheduler's parser in an IANA timezone. Whenever the schedule is set, the
scheduler's bookkeeping is reset (``schedule_epoch`` = now, ``next_tick_at``
unknown) so that it never fires ticks that fell before the edit.

A job-completion trigger runs this job when another job of the same account
ends in one of the given statuses; a chain that would loop back to the job
itself is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from tortoise.transactions import in_transaction

from server.models import Environment, Job, RunStatus
from server.services import audit
from server.services.accounts import check_name
from server.services.actor import Actor
from server.services.dbt_commands import check_steps
from server.services.errors import ValidationFailed
from server.services.permissions import Action
from server.services.runs import MAX_THREADS, MAX_TIMEOUT
from server.services.validation import check_identifier, check_int, check_text

FIELDS = {
    "name",
    "description",
    "environment_id",
    "steps",
    "generate_docs",
    "run_freshness",
    "timeout_seconds",
    "threads",
    "target_name",
    "schedule",
    "completion_trigger",
}
TRIGGER_STATUSES = {
    s.name.lower(): int(s) for s in (RunStatus.SUCCESS, RunStatus.ERROR, RunStatus.CANCELLED)
}
MAX_CHAIN = 50


@dataclass(frozen=True, slots=True)
class Schedule:
    cron: str | None
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class CompletionTrigger:
    job_id: int
    statuses: tuple[str, ...]  # success | error | cancelled


def check_schedule(schedule: Schedule) -> Schedule:
    tz_name = (schedule.timezone or "UTC").strip()
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            f"unknown timezone {tz_name!r} (use an IANA name like 'Europe/Paris')",
            field="schedule.timezone",
        ) from None
    if schedule.cron is None or not schedule.cron.strip():
        return Schedule(None, tz_name)
    cron = " ".join(schedule.cron.split())
    if len(cron) > 200:
        raise ValidationFailed("cron is too long", field="schedule.cron")
    try:
        CronTrigger.from_crontab(cron, timezone=tz)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed(f"invalid cron {cron!r}: {exc}", field="schedule.cron") from None
    return Schedule(cron, tz_name)


async def _check_trigger(actor: Actor, job_id: int | None, trig: CompletionTrigger) -> None:
    if not trig.statuses or not set(trig.statuses) <= set(TRIGGER_STATUSES):
        raise ValidationFailed(
            "completion trigger statuses must be some of success, error, cancelled",
            field="completionTrigger.statuses",
        )
    if trig.job_id == job_id:
        raise ValidationFailed("a job cannot trigger itself", field="completionTrigger.jobId")
    upstream = await actor.get(Job, trig.job_id, what="job")
    seen = {upstream.id}
    current: Job | None = upstream
    for _ in range(MAX_CHAIN):  # walk upstream: reaching this job again would loop forever
        if current is None or current.trigger_job_id is None:  # type: ignore[attr-defined]
            return
        if current.trigger_job_id == job_id or current.trigger_job_id in seen:  # type: ignore[attr-defined]
            raise ValidationFailed(
                "this completion trigger would make a loop of jobs",
                field="completionTrigger.jobId",
            )
        seen.add(current.trigger_job_id)  # type: ignore[attr-defined]
        current = await Job.filter(
            account_id=actor.account_id,
            id=current.trigger_job_id,  # type: ignore[attr-defined]
        ).first()
    raise ValidationFailed("the job chain is too long", field="completionTrigger.jobId")


async def _apply(actor: Actor, job: Job, values: Mapping[str, Any]) -> list[str]:
    """Validate ``values`` and set them on ``job``; returns the names of the changed fields."""
    unknown = set(values) - FIELDS
    if unknown:
        raise ValueError(f"unknown job fields {unknown}")
    if "name" in values:
        job.name = check_name(values["name"])
    if "description" in values:
        job.description = check_text(values["description"], "description", max_length=10_000)
    if "environment_id" in values:
        env = await actor.get(Environment, values["environment_id"], what="environment")
        if env.kind != "deployment":
            raise ValidationFailed(
                "jobs run in deployment environments, not development ones",
                field="environmentId",
            )
        if job.id is not None and env.project_id != job.project_id:  # type: ignore[attr-defined]
            raise ValidationFailed(
                "a job cannot move to another project's environment", field="environmentId"
            )
        job.environment_id = env.id  # type: ignore[attr-defined]
        job.project_id = env.project_id  # type: ignore[attr-defined]
    if "steps" in values:
        job.steps = check_steps(values["steps"])
    for flag in ("generate_docs", "run_freshness"):
        if flag in values:
            setattr(job, flag, bool(values[flag]))
    if "timeout_seconds" in values:
        job.timeout_seconds = (
            check_int(values["timeout_seconds"] or 0, "timeoutSeconds", 0, MAX_TIMEOUT) or 0
        )
    if "threads" in values:
        job.threads = check_int(values["threads"], "threads", 1, MAX_THREADS)
    if "target_name" in values:
        job.target_name = check_identifier(values["target_name"], "targetName")
    if "schedule" in values:
        sched = check_schedule(values["schedule"] or Schedule(None))
        job.cron, job.timezone = sched.cron, sched.timezone
        job.schedule_epoch = datetime.now(UTC)
        job.next_tick_at = None
    if "completion_trigger" in values:
        trig: CompletionTrigger | None = values["completion_trigger"]
        if trig is None:
            job.trigger_job_id = None  # type: ignore[attr-defined]
            job.trigger_statuses = []
        else:
            await _check_trigger(actor, job.id, trig)
            job.trigger_job_id = trig.job_id  # type: ignore[attr-defined]
            job.trigger_statuses = sorted({TRIGGER_STATUSES[s] for s in trig.statuses})
    return sorted(values)


async def create_job(actor: Actor, values: Mapping[str, Any]) -> Job:
    actor.require(Action.EDIT_JOBS)
    if values.get("environment_id") is None:
        raise ValidationFailed("environmentId is required", field="environmentId")
    job = Job(account_id=actor.account_id)
    await _apply(actor, job, {"name": None, "steps": None, **values})
    async with in_transaction():
        await job.save()
        await audit.record(actor, "job.create", "job", job.id, {"name": job.name})
    return job


async def update_job(actor: Actor, job_id: int, changes: Mapping[str, Any]) -> Job:
    actor.require(Action.EDIT_JOBS)
    job = await actor.get(Job, job_id, what="job")
    changed = await _apply(actor, job, changes)
    async with in_transaction():
        await job.save()
        await audit.record(actor, "job.update", "job", job.id, {"fields": changed})
    return job


async def delete_job(actor: Actor, job_id: int) -> None:
    actor.require(Action.EDIT_JOBS)
    job = await actor.get(Job, job_id, what="job")
    async with in_transaction():
        await Job.filter(id=job.id).update(
            deleted_at=datetime.now(UTC), cron=None, next_tick_at=None
        )
        # downstream jobs lose their trigger rather than point at a deleted job
        await Job.filter(account_id=actor.account_id, trigger_job_id=job.id).update(
            trigger_job_id=None, trigger_statuses=[]
        )
        await audit.record(actor, "job.delete", "job", job.id)
