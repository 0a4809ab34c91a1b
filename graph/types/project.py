"""Projects, environments and their dbt environment variables."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from graph.relay import Node
from graph.rows import Row, backed_by, column, computed, relation
from graph.types.enums import EnvironmentKind

if TYPE_CHECKING:
    from graph.types.job import Job
    from graph.types.warehouse import Credentials, WarehouseConnection


class ProjectRow(Row):
    TYPE = "Project"
    KIND = "project"
    BASE = ("id", "deleted_at")

    name = column("name")
    description = column("description")
    repository_url = column("repository_url")
    bundled_path = column("bundled_path")
    subdirectory = column("subdirectory")
    default_branch = column("default_branch")
    created_at = column("created_at")
    updated_at = column("updated_at")

    environments = relation("environments_by_project", "id")
    jobs = relation("jobs_by_project", "id")
    env_vars = relation("env_vars_by_project", "id")


class EnvironmentRow(Row):
    TYPE = "Environment"
    KIND = "environment"
    BASE = ("id", "deleted_at")

    name = column("name")
    kind = column("kind")
    deployment_type = column("deployment_type")
    dbt_version = column("dbt_version")
    target_name = column("target_name")
    threads = column("threads")
    custom_branch = column("custom_branch")
    created_at = column("created_at")
    updated_at = column("updated_at")

    project = relation("project", "project_id")
    connection = relation("connection", "connection_id")
    credentials = relation("credentials", "credentials_id")
    jobs = relation("jobs_by_environment", "id")


class EnvVarRow(Row):
    TYPE = "EnvVar"
    KIND = "env_var"

    name = column("name")
    is_secret = column("is_secret")
    value = column("value")  # NULL for secrets: the query never selects their value
    updated_at = column("updated_at")

    project = relation("project", "project_id")
    environment = relation("environment", "environment_id")
    job = relation("job", "job_id")

    @computed("job_id", "environment_id")
    def scope(self) -> str:
        if self["job_id"] is not None:
            return "job"
        return "environment" if self["environment_id"] is not None else "project"


_JobT = Annotated["Job", strawberry.lazy("graph.types.job")]
_ConnT = Annotated["WarehouseConnection", strawberry.lazy("graph.types.warehouse")]
_CredsT = Annotated["Credentials", strawberry.lazy("graph.types.warehouse")]


@strawberry.type(description="A dbt project: a git remote or a directory on the server.")
@backed_by(ProjectRow)
class Project(Node):
    database_id: int
    name: str
    description: str
    repository_url: str | None
    bundled_path: str | None
    subdirectory: str
    default_branch: str
    created_at: datetime
    updated_at: datetime
    environments: list[Environment]
    jobs: list[_JobT]
    env_vars: list[EnvVar] = strawberry.field(
        description="Variables of every scope (project, environment, job) in this project."
    )


@strawberry.type(description="Where a project's dbt runs: connection, credentials, version.")
@backed_by(EnvironmentRow)
class Environment(Node):
    database_id: int
    name: str
    kind: EnvironmentKind
    deployment_type: str | None = strawberry.field(description="production, staging or null.")
    dbt_version: str
    project: Project
    connection: _ConnT | None
    credentials: _CredsT | None
    target_name: str
    threads: int
    custom_branch: str | None
    created_at: datetime
    updated_at: datetime
    jobs: list[_JobT]


@strawberry.type(description="A dbt environment variable; secret ones never show their value.")
@backed_by(EnvVarRow)
class EnvVar(Node):
    database_id: int
    name: str
    value: str | None = strawberry.field(description="Null for secrets (DBT_ENV_SECRET_...).")
    is_secret: bool
    scope: str = strawberry.field(description="project, environment or job.")
    project: Project
    environment: Environment | None
    job: _JobT | None
    updated_at: datetime
