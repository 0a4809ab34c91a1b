"""Runs, their steps and artifacts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from graph.relay import Node
from graph.rows import Row, backed_by, column, computed, relation
from graph.types.enums import STATUS_BY_CODE, RunStatus
from server.models import RunStatus as Status
from server.services.queue import QueueInfo

if TYPE_CHECKING:
    from graph.subscriptions import LogLineConnection
    from graph.types.account import User
    from graph.types.job import Job
    from graph.types.project import Environment, Project


async def _queue_info(run: Any) -> QueueInfo | None:
    """Queue info through the request's loader: a page of runs costs one computation."""
    if run["status"] != Status.QUEUED:
        return None
    return await run._l.queue_info.load(run.pk)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


class RunRow(Row):
    TYPE = "Run"
    KIND = "run"

    status_code = column("status")
    status_message = column("status_message")
    trigger_kind = column("trigger_kind")
    cause = column("cause")
    git_branch = column("git_branch")
    git_sha = column("git_sha")
    timeout_seconds = column("timeout_seconds")
    scheduled_for = column("scheduled_for")
    attempt = column("attempt")
    created_at = column("created_at")
    updated_at = column("updated_at")
    dequeued_at = column("dequeued_at")
    started_at = column("started_at")
    finished_at = column("finished_at")
    artifacts_saved = column("artifacts_saved")
    # resolved on Run from the queue; declared here so a query fetches the status
    waiting_reason = column("status")
    queue_position = column("status")

    job = relation("job", "job_id")
    environment = relation("environment", "environment_id")
    project = relation("project", "project_id")
    triggered_by = relation("user", "triggered_by_user_id")
    previous_run = relation("run", "previous_run_id")
    steps = relation("steps_by_run", "id")
    artifacts = relation("artifacts_by_run", "id")

    @computed("status")
    def status(self) -> str:
        return STATUS_BY_CODE[self["status"]]

    @computed("status")
    def status_humanized(self) -> str:
        return Status(self["status"]).humanized

    @computed("status")
    def is_final(self) -> bool:
        return self["status"] >= Status.SUCCESS

    @computed("cancel_requested_at")
    def cancel_requested(self) -> bool:
        return self["cancel_requested_at"] is not None

    @computed("overrides")
    def overrides(self) -> Any:
        o = self["overrides"]
        return json.loads(o) if isinstance(o, str) else o

    @computed("started_at", "finished_at")
    def duration_seconds(self) -> float | None:
        return _seconds(self["started_at"], self["finished_at"])

    @computed("created_at", "dequeued_at")
    def queued_seconds(self) -> float | None:
        return _seconds(self["created_at"], self["dequeued_at"])


class RunStepRow(Row):
    TYPE = "RunStep"
    KIND = "run_step"

    index = column("index")
    name = column("name")
    kind = column("kind")
    command = column("command")
    status_code = column("status")
    status_message = column("status_message")
    started_at = column("started_at")
    finished_at = column("finished_at")

    run = relation("run", "run_id")

    @computed("status")
    def status(self) -> str:
        return STATUS_BY_CODE[self["status"]]

    @computed("started_at", "finished_at")
    def duration_seconds(self) -> float | None:
        return _seconds(self["started_at"], self["finished_at"])


class ArtifactRow(Row):
    TYPE = "Artifact"
    KIND = "artifact"

    step_index = column("step_index")
    path = column("path")
    size = column("size")
    sha256 = column("sha256")
    created_at = column("created_at")

    run = relation("run", "run_id")


_JobT = Annotated["Job", strawberry.lazy("graph.types.job")]
_EnvT = Annotated["Environment", strawberry.lazy("graph.types.project")]
_ProjectT = Annotated["Project", strawberry.lazy("graph.types.project")]
_UserT = Annotated["User", strawberry.lazy("graph.types.account")]


@strawberry.type(description="One step of a run: one dbt command.")
@backed_by(RunStepRow)
class RunStep(Node):
    database_id: int
    index: int = strawberry.field(description="1-based, as in dbt Cloud.")
    name: str
    kind: str = strawberry.field(description="clone, deps, dbt, retry, freshness or docs.")
    command: str
    status: RunStatus
    status_code: int
    status_message: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    run: Run


@strawberry.type(description="A file a run produced (manifest.json, run_results.json...).")
@backed_by(ArtifactRow)
class Artifact(Node):
    database_id: int
    step_index: int
    path: str = strawberry.field(description="Relative to dbt's target directory.")
    size: int
    sha256: str
    created_at: datetime
    run: Run


@strawberry.type(description="One execution of a job.")
@backed_by(RunRow)
class Run(Node):
    database_id: int
    status: RunStatus
    status_code: int = strawberry.field(description="dbt Cloud's code: 1, 2, 3, 10, 20 or 30.")
    status_humanized: str
    status_message: str | None
    is_final: bool
    cause: str
    trigger_kind: str = strawberry.field(
        description="manual, api, schedule, job_completion or retry."
    )
    job: _JobT
    environment: _EnvT
    project: _ProjectT
    triggered_by: _UserT | None
    previous_run: Run | None = strawberry.field(
        description="The run this one retries, or the upstream run that triggered it."
    )
    git_branch: str | None
    git_sha: str | None
    attempt: int
    timeout_seconds: int
    overrides: JSON
    scheduled_for: datetime | None = strawberry.field(
        description="The cron tick this run is for; null unless the schedule made it."
    )
    created_at: datetime
    updated_at: datetime
    dequeued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    duration_seconds: float | None
    queued_seconds: float | None
    artifacts_saved: bool
    steps: list[RunStep]
    artifacts: list[Artifact]

    @strawberry.field(
        description="For a queued run, why it waits (serial job, slots in use, a busy DuckDB "
        "file...); null once it left the queue."
    )
    async def waiting_reason(self) -> str | None:
        info = await _queue_info(self)
        return info.reason if info else None

    @strawberry.field(
        description="For a queued run, its place in the account's queue (1 = next); null "
        "once it left the queue."
    )
    async def queue_position(self) -> int | None:
        info = await _queue_info(self)
        return info.position if info else None

    @strawberry.field(
        description="The run's log lines in seq order (stored or archived alike); `level` is a "
        "minimum severity: warn gives warn and error lines."
    )
    async def logs(
        self,
        first: int | None = 100,
        after: str | None = None,
        step: int | None = None,
        level: str | None = None,
    ) -> Annotated[LogLineConnection, strawberry.lazy("graph.subscriptions")]:
        from graph.subscriptions import run_logs_connection

        row: Any = self
        return await run_logs_connection(  # type: ignore[return-value]
            row._l.platform, row.pk, row._l.actor.account_id, first, after, step, level
        )
