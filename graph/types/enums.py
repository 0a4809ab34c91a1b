"""Enums of the API. Values are lower-case, as clients and dbt Cloud tools expect."""

from __future__ import annotations

import enum

import strawberry

from server.models import RunStatus as Status


@strawberry.enum(
    name="RunStatus",
    description="queued (1) → starting (2) → running (3) → success (10) | error (20) | "
    "cancelled (30); the codes follow dbt Cloud.",
)
class RunStatus(enum.Enum):
    queued = "queued"
    starting = "starting"
    running = "running"
    success = "success"
    error = "error"
    cancelled = "cancelled"


# Rows hand GraphQL the enum *value* (a plain string): graphql-core maps it to
# the name with one dict lookup, where an Enum member costs a scan per field.
STATUS_BY_CODE: dict[int, str] = {int(s): s.name.lower() for s in Status}
CODE_OF_STATUS: dict[RunStatus, int] = {RunStatus(v): k for k, v in STATUS_BY_CODE.items()}


@strawberry.enum(description="A member's or token's role in an account.")
class Role(enum.Enum):
    owner = "owner"
    admin = "admin"
    developer = "developer"
    analyst = "analyst"
    job_runner = "job_runner"
    viewer = "viewer"


@strawberry.enum(description="development: the IDE's; deployment: where jobs run.")
class EnvironmentKind(enum.Enum):
    development = "development"
    deployment = "deployment"
