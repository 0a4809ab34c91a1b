"""Triggering, cancelling and retrying runs (the rules; execution lives in ``server.runs``).

A run's commands are fixed when it is triggered (``steps_spec``): later edits
of the job do not change a queued run. Each entry is ``{"command", "kind"}``
with kind ``dbt``, ``freshness`` or ``docs`` (the last two never fail the
run), or ``retry`` (``dbt retry`` against the previous run's results).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from server.db import Database
from server.models import Job, Run, RunStatus, RunStep
from server.runs import state
from server.services.actor import Actor
from server.services.dbt_commands import check_steps
from server.services.errors import Conflict, ValidationFailed
from server.services.permissions import Action

MAX_TIMEOUT = 7 * 24 * 3600
MAX_THREADS = 64


@dataclass(frozen=True, slots=True)
class RunOverrides:
    steps: list[str] | None = None
    threads: int | None = None
    target: str | None = None
    git_branch: str | None = None
    git_sha: str | None = None
    timeout_seconds: int | None = None
    generate_docs: bool | None = None
    schema: str | None = None

    def validate(self) -> RunOverrides:
        if self.steps is not None:
            check_steps(self.steps, field="overrides.steps")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise ValidationFailed(
                f"threads must be between 1 and {MAX_THREADS}", field="overrides.threads"
            )
        if self.timeout_seconds is not None and not 0 <= self.timeout_seconds <= MAX_TIMEOUT:
            raise ValidationFailed(
                f"timeoutSeconds must be between 0 and {MAX_TIMEOUT}",
                field="overrides.timeoutSeconds",
            )
        for name in ("target", "git_branch", "schema"):
            v = getattr(self, name)
            if v is not None and (not v.strip() or len(v) > 200 or any(c in v for c in "\n\r\0")):
                raise ValidationFailed(f"invalid {name}", field=f"overrides.{name}")
        if self.git_sha is not None and not (
            4 <= len(self.git_sha) <= 64 and all(c in "0123456789abcdef" for c in self.git_sha)
        ):
            raise ValidationFailed("gitSha must be a hex commit id", field="overrides.gitSha")
        return self

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


_OVERRIDE_FIELDS = {f.name for f in fields(RunOverrides)}


def plan_steps(job: Job, overrides: RunOverrides) -> list[dict[str, str]]:
    commands = overrides.steps if overrides.steps is not None else list(job.steps)
    plan: list[dict[str, str]] = []
    if job.run_freshness:
        plan.append({"command": "dbt source freshness", "kind": "freshness"})
    plan += [{"command": c, "kind": "dbt"} for c in commands]
    docs = job.generate_docs if overrides.generate_docs is None else overrides.generate_docs
    if docs:
        plan.append({"command": "dbt docs generate", "kind": "docs"})
    return plan


async def trigger_run(
    actor: Actor,
    job_id: int,
    *,
    cause: str = "",
    overrides: RunOverrides | None = None,
    trigger_kind: str = "manual",
    scheduled_for: datetime | None = None,
    previous_run: Run | None = None,
    steps_spec: list[dict[str, str]] | None = None,
    db: Database | None = None,
) -> Run:
    """Create a queued run of the job and wake the dispatcher.

    With ``scheduled_for`` (a cron tick) a second run for the same tick is
    refused with Conflict: the unique (job, scheduled_for) key decides.
    """
    actor.require(Action.TRIGGER_RUN)
    job = await actor.get(Job, job_id, what="job")
    ov = (overrides or RunOverrides()).validate()
    cause = (cause or "").strip()[:255] or {
        "manual": "Triggered manually",
        "api": "Triggered via API",
        "schedule": "Triggered by schedule",
        "job_completion": "Triggered by job completion",
        "retry": "Retry of a failed run",
    }.get(trigger_kind, trigger_kind)
    env = await job.environment
    spec = steps_spec if steps_spec is not None else plan_steps(job, ov)
    timeout = ov.timeout_seconds if ov.timeout_seconds is not None else job.timeout_seconds
    try:
        async with in_transaction() as tx:
            run = await Run.create(
                account_id=actor.account_id,
                project_id=job.project_id,  # type: ignore[attr-defined]
                environment_id=job.environment_id,  # type: ignore[attr-defined]
                job_id=job.id,
                status=RunStatus.QUEUED,
                trigger_kind=trigger_kind,
                cause=cause,
                triggered_by_user_id=actor.user_id,
                previous_run_id=previous_run.id if previous_run else None,
                git_branch=ov.git_branch or env.custom_branch,
                git_sha=ov.git_sha,
                steps_spec=spec,
                overrides=ov.as_json(),
                timeout_seconds=timeout,
                priority=job.priority,
                scheduled_for=scheduled_for,
                attempt=(previous_run.attempt + 1) if previous_run else 1,
            )
            await tx.execute_query(
                "SELECT pg_notify($1, $2)",
                [
                    state.CHANNEL,
                    state.RunEvent(
                        run=run.id,
                        account=actor.account_id,
                        job=job.id,
                        project=job.project_id,  # type: ignore[attr-defined]
                        environment=job.environment_id,  # type: ignore[attr-defined]
                        status=int(RunStatus.QUEUED),
                        kind="created",
                    ).payload(),
                ],
            )
    except IntegrityError:
        raise Conflict(f"a run for the tick {scheduled_for} already exists") from None
    return run


async def cancel_run(actor: Actor, run_id: int, db: Database, *, reason: str = "") -> Run:
    """Cancel a queued run now; flag a starting/running one for its worker to stop.

    Cancelling a finished run is a Conflict that says which status it ended in.
    """
    actor.require(Action.TRIGGER_RUN)
    run = await actor.get(Run, run_id, what="run")
    reason = reason.strip() or "Cancelled by user"
    async with db.acquire() as conn:
        row = await state.transition(
            conn, run.id, RunStatus.CANCELLED, expected=(RunStatus.QUEUED,), message=reason
        )
        if row is None:
            await state.request_cancel(conn, run.id, reason)
    await run.refresh_from_db()
    if RunStatus(run.status).is_final and run.status != RunStatus.CANCELLED:
        raise Conflict(f"run {run.id} already ended: {RunStatus(run.status).humanized}")
    return run


async def retry_run(actor: Actor, run_id: int, *, cause: str = "") -> Run:
    """Rerun an errored run from its failure: ``dbt retry`` for the failed step, then the rest."""
    actor.require(Action.TRIGGER_RUN)
    prev = await actor.get(Run, run_id, what="run")
    if prev.status != RunStatus.ERROR:
        raise Conflict(
            f"only a run that ended in error can be retried (run {prev.id} is "
            f"{RunStatus(prev.status).humanized})"
        )
    failed = await RunStep.filter(run_id=prev.id, status=RunStatus.ERROR).order_by("index").first()
    spec: list[dict[str, str]] = list(prev.steps_spec)
    start = 0
    if failed is not None and failed.command:
        for i, entry in enumerate(spec):
            if entry["command"] == failed.command or entry.get("retry_of") == failed.command:
                start = i
                break
    rest = spec[start:]
    if rest and rest[0]["kind"] in ("dbt", "retry"):
        first = rest[0]
        original = first.get("retry_of", first["command"])
        rest = [
            {
                "command": "dbt retry",
                "kind": "retry",
                "retry_of": original,
                "previous_step": str(failed.index if failed else ""),
            },
            *rest[1:],
        ]
    return await trigger_run(
        actor,
        prev.job_id,  # type: ignore[attr-defined]
        cause=cause or f"Rerun from failure of run {prev.id}",
        overrides=RunOverrides(
            **{
                k: v
                for k, v in (prev.overrides or {}).items()
                if k in _OVERRIDE_FIELDS and k != "steps"
            }
        ),
        trigger_kind="retry",
        previous_run=prev,
        steps_spec=rest,
    )
