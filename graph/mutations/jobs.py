"""Mutations on jobs, and on runs: trigger, cancel, retry (rerun from failure)."""

from __future__ import annotations

from typing import Any

import strawberry

from graph.errors import UserError
from graph.loaders import Loaders
from graph.mutations.common import DeletePayload, provided, run_mutation
from graph.relay import decode_id
from graph.types.enums import RunStatus
from graph.types.job import Job
from graph.types.run import Run
from server.services import jobs, run_actions
from server.services.runs import RunOverrides


@strawberry.input(description="A cron schedule; a null cron removes the schedule.")
class ScheduleInput:
    cron: str | None = None
    timezone: str | None = strawberry.field(default=None, description="IANA name; default UTC.")


@strawberry.input(description="Run the job when another job ends in one of these statuses.")
class CompletionTriggerInput:
    job_id: strawberry.ID
    statuses: list[RunStatus]


@strawberry.input
class CreateJobInput:
    environment_id: strawberry.ID
    name: str
    steps: list[str] = strawberry.field(description="dbt commands, e.g. 'dbt build -s tag:x'.")
    description: str | None = strawberry.UNSET
    generate_docs: bool | None = strawberry.UNSET
    run_freshness: bool | None = strawberry.UNSET
    timeout_seconds: int | None = strawberry.UNSET
    threads: int | None = strawberry.UNSET
    target_name: str | None = strawberry.UNSET
    schedule: ScheduleInput | None = strawberry.UNSET
    completion_trigger: CompletionTriggerInput | None = strawberry.UNSET


@strawberry.input
class UpdateJobInput:
    environment_id: strawberry.ID | None = strawberry.UNSET
    name: str | None = strawberry.UNSET
    steps: list[str] | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    generate_docs: bool | None = strawberry.UNSET
    run_freshness: bool | None = strawberry.UNSET
    timeout_seconds: int | None = strawberry.UNSET
    threads: int | None = strawberry.UNSET
    target_name: str | None = strawberry.UNSET
    schedule: ScheduleInput | None = strawberry.field(
        default=strawberry.UNSET,
        description="Setting it (even unchanged) restarts the schedule from now: ticks that "
        "fell before the edit never run.",
    )
    completion_trigger: CompletionTriggerInput | None = strawberry.field(
        default=strawberry.UNSET, description="Null removes the trigger."
    )


def _job_values(values: dict[str, Any]) -> dict[str, Any]:
    if values.get("environment_id") is not None:
        values["environment_id"] = decode_id(
            values["environment_id"], "Environment", "environmentId"
        )
    if "schedule" in values and values["schedule"] is not None:
        s: ScheduleInput = values["schedule"]
        values["schedule"] = jobs.Schedule(s.cron, s.timezone or "UTC")
    if "completion_trigger" in values and values["completion_trigger"] is not None:
        t: CompletionTriggerInput = values["completion_trigger"]
        values["completion_trigger"] = jobs.CompletionTrigger(
            decode_id(t.job_id, "Job", "completionTrigger.jobId"),
            tuple(s.value for s in t.statuses),
        )
    for key in ("name", "steps", "environment_id"):  # not nullable in the model
        if key in values and values[key] is None:
            del values[key]
    return values


@strawberry.type
class JobPayload:
    job: Job | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="Change this one run only; the job stays as it is.")
class RunOverridesInput:
    steps: list[str] | None = None
    threads: int | None = None
    target: str | None = None
    git_branch: str | None = None
    git_sha: str | None = None
    timeout_seconds: int | None = None
    generate_docs: bool | None = None
    schema: str | None = None

    def to_overrides(self) -> RunOverrides:
        return RunOverrides(
            steps=self.steps,
            threads=self.threads,
            target=self.target,
            git_branch=self.git_branch,
            git_sha=self.git_sha,
            timeout_seconds=self.timeout_seconds,
            generate_docs=self.generate_docs,
            schema=self.schema,
        )


@strawberry.type
class RunPayload:
    run: Run | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class JobMutations:
    @strawberry.mutation
    async def create_job(self, info: strawberry.Info, input: CreateJobInput) -> JobPayload:
        async def op(ld: Loaders) -> JobPayload:
            job = await jobs.create_job(ld.actor, _job_values(provided(input)))
            return JobPayload(job=await ld.fresh("job", job.id))  # type: ignore[arg-type]

        return await run_mutation(info, JobPayload, op)

    @strawberry.mutation
    async def update_job(
        self, info: strawberry.Info, id: strawberry.ID, input: UpdateJobInput
    ) -> JobPayload:
        async def op(ld: Loaders) -> JobPayload:
            pk = decode_id(id, "Job")
            await jobs.update_job(ld.actor, pk, _job_values(provided(input)))
            return JobPayload(job=await ld.fresh("job", pk))  # type: ignore[arg-type]

        return await run_mutation(info, JobPayload, op)

    @strawberry.mutation(description="Soft-delete: the schedule stops; runs stay.")
    async def delete_job(self, info: strawberry.Info, id: strawberry.ID) -> DeletePayload:
        async def op(ld: Loaders) -> DeletePayload:
            await jobs.delete_job(ld.actor, decode_id(id, "Job"))
            return DeletePayload(deleted_id=id)

        return await run_mutation(info, DeletePayload, op)

    @strawberry.mutation(description="Queue a run of the job.")
    async def trigger_job_run(
        self,
        info: strawberry.Info,
        job_id: strawberry.ID,
        cause: str | None = None,
        overrides: RunOverridesInput | None = None,
    ) -> RunPayload:
        async def op(ld: Loaders) -> RunPayload:
            run = await run_actions.trigger(
                ld.actor,
                decode_id(job_id, "Job", "jobId"),
                cause=cause or "",
                overrides=overrides.to_overrides() if overrides else None,
            )
            return RunPayload(run=await ld.fresh("run", run.id))  # type: ignore[arg-type]

        return await run_mutation(info, RunPayload, op)

    @strawberry.mutation(
        description="Cancel a queued run now; ask the worker of a running one to stop."
    )
    async def cancel_run(
        self, info: strawberry.Info, id: strawberry.ID, reason: str | None = None
    ) -> RunPayload:
        async def op(ld: Loaders) -> RunPayload:
            run = await run_actions.cancel(
                ld.actor, ld.db, decode_id(id, "Run"), reason=reason or ""
            )
            return RunPayload(run=await ld.fresh("run", run.id))  # type: ignore[arg-type]

        return await run_mutation(info, RunPayload, op)

    @strawberry.mutation(description="Rerun a failed run from its failed step (dbt retry).")
    async def retry_run(
        self, info: strawberry.Info, id: strawberry.ID, cause: str | None = None
    ) -> RunPayload:
        async def op(ld: Loaders) -> RunPayload:
            run = await run_actions.retry(ld.actor, decode_id(id, "Run"), cause=cause or "")
            return RunPayload(run=await ld.fresh("run", run.id))  # type: ignore[arg-type]

        return await run_mutation(info, RunPayload, op)
