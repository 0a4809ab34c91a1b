"""Jobs: steps, schedule, job-completion trigger, and their runs."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from graph.relay import Connection, Node
from graph.rows import Row, backed_by, column, computed, relation
from graph.types.enums import CODE_OF_STATUS, STATUS_BY_CODE, RunStatus

if TYPE_CHECKING:
    from graph.loaders import Loaders
    from graph.types.project import Environment, Project
    from graph.types.run import Run


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class TriggerRow:
    """A job-completion trigger: which upstream job, on which of its final statuses."""

    __slots__ = ("_l", "job_id", "statuses")

    def __init__(self, loaders: Loaders, job_id: int, codes: list[int]) -> None:
        self._l = loaders
        self.job_id = job_id
        self.statuses = [STATUS_BY_CODE[c] for c in codes]

    @property
    def job(self) -> Any:
        return self._l.job.load_full(self.job_id)


class JobRow(Row):
    TYPE = "Job"
    KIND = "job"
    BASE = ("id", "deleted_at")

    name = column("name")
    description = column("description")
    generate_docs = column("generate_docs")
    run_freshness = column("run_freshness")
    timeout_seconds = column("timeout_seconds")
    threads = column("threads")
    target_name = column("target_name")
    created_at = column("created_at")
    updated_at = column("updated_at")

    project = relation("project", "project_id")
    environment = relation("environment", "environment_id")
    last_run = relation("last_run_by_job", "id")

    @computed("steps")
    def steps(self) -> list[str]:
        return _json(self["steps"])

    @computed("cron", "timezone", "next_tick_at")
    def schedule(self) -> JobSchedule:
        return JobSchedule(
            cron=self["cron"], timezone=self["timezone"], next_tick_at=self["next_tick_at"]
        )

    @computed("trigger_job_id", "trigger_statuses")
    def completion_trigger(self) -> TriggerRow | None:
        if self["trigger_job_id"] is None:
            return None
        codes = _json(self["trigger_statuses"]) or []
        return TriggerRow(self._l, self["trigger_job_id"], codes)


_RunT = Annotated["Run", strawberry.lazy("graph.types.run")]
_EnvT = Annotated["Environment", strawberry.lazy("graph.types.project")]
_ProjectT = Annotated["Project", strawberry.lazy("graph.types.project")]


@strawberry.type(description="When a job runs on its own: a cron expression in a timezone.")
class JobSchedule:
    cron: str | None = strawberry.field(description="Null: the job has no schedule.")
    timezone: str
    next_tick_at: datetime | None = strawberry.field(
        description="The next tick, once the scheduler has computed it."
    )


@strawberry.type(description="Run this job when another job ends in one of these statuses.")
class JobCompletionTrigger:
    job: Job
    statuses: list[RunStatus]


@strawberry.type(description="A named list of dbt steps that runs in a deployment environment.")
@backed_by(JobRow)
class Job(Node):
    database_id: int
    name: str
    description: str
    project: _ProjectT
    environment: _EnvT
    steps: list[str]
    generate_docs: bool
    run_freshness: bool
    timeout_seconds: int = strawberry.field(description="0: no timeout.")
    threads: int | None = strawberry.field(description="Null: the environment's threads.")
    target_name: str | None = strawberry.field(description="Null: the environment's target.")
    schedule: JobSchedule
    completion_trigger: JobCompletionTrigger | None
    last_run: _RunT | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="This job's runs, newest first.")
    async def runs(
        self,
        info: strawberry.Info,
        first: int | None = 50,
        after: str | None = None,
        status: list[RunStatus] | None = None,
    ) -> Connection[_RunT]:
        from graph.prefetch import page  # (cycle: prefetch → loaders → these types)

        filters = {
            "job_id": self["id"],  # type: ignore[index]
            "status": [CODE_OF_STATUS[s] for s in status] if status else None,
        }
        return await page(info._raw_info, self._l, "run", filters, first, after)  # type: ignore[attr-defined]
