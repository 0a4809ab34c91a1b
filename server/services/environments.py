"""Environments: where a project's dbt runs (warehouse connection, credentials, dbt version).

A project has at most one development environment (the IDE's) and at most one
production deployment environment, as in dbt Cloud. The connection must be of
the same account; the credentials of the same project. Deleting is soft and
takes the environment's jobs (and their schedules) with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from server.models import Connection, Credentials, Environment, Job, Project
from server.services import audit
from server.services.accounts import check_name
from server.services.actor import Actor
from server.services.errors import Conflict, ValidationFailed
from server.services.permissions import Action
from server.services.projects import tombstone
from server.services.validation import check_git_ref, check_identifier, check_int

KINDS = ("development", "deployment")
DEPLOYMENT_TYPES = ("production", "staging")
_DBT_VERSION = re.compile(r"^(\d+\.\d+(\.\d+)?|latest|versionless)$")
FIELDS = {
    "name",
    "kind",
    "deployment_type",
    "dbt_version",
    "connection_id",
    "credentials_id",
    "target_name",
    "threads",
    "custom_branch",
}


async def _clean(actor: Actor, project_id: int, values: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(values) - FIELDS
    if unknown:
        raise ValueError(f"unknown environment fields {unknown}")
    out = dict(values)
    if "name" in out:
        out["name"] = check_name(out["name"])
    if "kind" in out and out["kind"] not in KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}", field="kind")
    if out.get("deployment_type") is not None and out["deployment_type"] not in DEPLOYMENT_TYPES:
        raise ValidationFailed(
            f"deploymentType must be one of {', '.join(DEPLOYMENT_TYPES)}", field="deploymentType"
        )
    if "dbt_version" in out:
        v = (out["dbt_version"] or "").strip()
        if not _DBT_VERSION.match(v):
            raise ValidationFailed(
                "dbtVersion must look like '1.11' or be 'latest'", field="dbtVersion"
            )
        out["dbt_version"] = v
    if "target_name" in out:
        out["target_name"] = check_identifier(out["target_name"], "targetName") or "default"
    if "threads" in out:
        out["threads"] = check_int(out["threads"], "threads", 1, 64) or 4
    if "custom_branch" in out:
        out["custom_branch"] = check_git_ref(out["custom_branch"], "customBranch")
    if out.get("connection_id") is not None:
        await actor.get(Connection, out["connection_id"], what="connection")
    if out.get("credentials_id") is not None:
        creds = await actor.get(Credentials, out["credentials_id"], what="credentials")
        if creds.project_id != project_id:  # type: ignore[attr-defined]
            raise ValidationFailed(
                "the credentials belong to another project", field="credentialsId"
            )
        if creds.user_id is not None:  # type: ignore[attr-defined]
            raise ValidationFailed(
                "an environment cannot use a developer's own credentials", field="credentialsId"
            )
    return out


async def _check_unique_kind(actor: Actor, env: Environment) -> None:
    """One development and one production environment per project."""
    others = Environment.filter(
        account_id=actor.account_id,
        project_id=env.project_id,
        deleted_at=None,  # type: ignore[attr-defined]
    ).exclude(id=env.id)
    if env.kind == "development":
        env.deployment_type = None
        if await others.filter(kind="development").exists():
            raise Conflict("the project already has a development environment", field="kind")
    elif (
        env.deployment_type == "production"
        and await others.filter(kind="deployment", deployment_type="production").exists()
    ):
        raise Conflict("the project already has a production environment", field="deploymentType")


async def create_environment(
    actor: Actor, project_id: int, values: Mapping[str, Any]
) -> Environment:
    actor.require(Action.EDIT_PROJECTS)
    project = await actor.get(Project, project_id, what="project")
    data = await _clean(actor, project.id, {"name": None, **values})
    env = Environment(account_id=actor.account_id, project_id=project.id, **data)
    try:
        async with in_transaction():
            # serialise concurrent creations in one project for the uniqueness rules
            await Project.filter(id=project.id).select_for_update().first()
            await _check_unique_kind(actor, env)
            await env.save()
            await audit.record(
                actor, "environment.create", "environment", env.id, {"name": env.name}
            )
    except IntegrityError:
        raise Conflict(f"an environment named {env.name!r} already exists", field="name") from None
    return env


async def update_environment(
    actor: Actor, environment_id: int, changes: Mapping[str, Any]
) -> Environment:
    actor.require(Action.EDIT_PROJECTS)
    env = await actor.get(Environment, environment_id, what="environment")
    data = await _clean(actor, env.project_id, changes)  # type: ignore[attr-defined]
    if (
        "kind" in data
        and data["kind"] != env.kind
        and await Job.filter(environment_id=env.id, deleted_at=None).exists()
    ):
        raise Conflict("an environment with jobs cannot change its kind", field="kind")
    for key, value in data.items():
        setattr(env, key, value)
    try:
        async with in_transaction():
            await Project.filter(id=env.project_id).select_for_update().first()  # type: ignore[attr-defined]
            await _check_unique_kind(actor, env)
            await env.save()
            await audit.record(
                actor, "environment.update", "environment", env.id, {"fields": sorted(data)}
            )
    except IntegrityError:
        raise Conflict(f"an environment named {env.name!r} already exists", field="name") from None
    return env


async def delete_environment(actor: Actor, environment_id: int) -> None:
    actor.require(Action.EDIT_PROJECTS)
    env = await actor.get(Environment, environment_id, what="environment")
    now = datetime.now(UTC)
    async with in_transaction():
        await Job.filter(
            account_id=actor.account_id, environment_id=env.id, deleted_at=None
        ).update(deleted_at=now, cron=None, next_tick_at=None)
        env.deleted_at = now
        env.name = tombstone(env.name, env.id)
        await env.save(update_fields=["deleted_at", "name", "updated_at"])
        await audit.record(actor, "environment.delete", "environment", env.id)
