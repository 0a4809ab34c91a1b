"""Projects: where a dbt project's code comes from (a git remote or a directory on the server).

A bundled path points into the server's own filesystem, so only the account
owner may set one (or a ``file://`` remote); editors may set git remotes.
Deleting is soft: the project, its environments and jobs keep their rows for
the runs that reference them, are renamed out of the way of new ones, and
their schedules stop.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from server.models import Environment, Job, Project
from server.services import audit
from server.services.accounts import check_name
from server.services.actor import Actor
from server.services.errors import Conflict, ValidationFailed
from server.services.permissions import Action, allowed
from server.services.validation import check_git_ref, check_text

_REMOTE = re.compile(r"^((https?|ssh|git)://[^\s]+|[\w.-]+@[\w.-]+:[^\s]+)$")
FIELDS = {"name", "description", "repository_url", "bundled_path", "subdirectory", "default_branch"}


def _check_source(actor: Actor, repository_url: str | None, bundled_path: str | None) -> None:
    if repository_url is not None:
        if len(repository_url) > 1000:
            raise ValidationFailed("repositoryUrl is too long", field="repositoryUrl")
        local = repository_url.startswith("file://")
        if not local and not _REMOTE.match(repository_url):
            raise ValidationFailed(
                "repositoryUrl must be an https://, ssh://, git:// or user@host:path remote",
                field="repositoryUrl",
            )
        if local and not allowed(actor.role, Action.MANAGE_ACCOUNT):
            raise ValidationFailed(
                "only the account owner may use a file:// remote", field="repositoryUrl"
            )
    if bundled_path is not None:
        if not allowed(actor.role, Action.MANAGE_ACCOUNT):
            raise ValidationFailed(
                "only the account owner may point a project at a server directory",
                field="bundledPath",
            )
        if not bundled_path.startswith("/") or len(bundled_path) > 1000 or "\x00" in bundled_path:
            raise ValidationFailed("bundledPath must be an absolute path", field="bundledPath")
    if (repository_url is None) == (bundled_path is None):
        raise ValidationFailed(
            "set exactly one of repositoryUrl and bundledPath", field="repositoryUrl"
        )


def _check_subdirectory(value: str | None) -> str:
    value = (value or "").strip().strip("/")
    if len(value) > 500 or ".." in value.split("/") or "\x00" in value:
        raise ValidationFailed(
            "subdirectory must be a relative path inside the repository", field="subdirectory"
        )
    return value


def _clean(actor: Actor, values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if "name" in out:
        out["name"] = check_name(out["name"])
    if "description" in out:
        out["description"] = check_text(out["description"], "description", max_length=10_000)
    for key in ("repository_url", "bundled_path"):
        if key in out and out[key] is not None:
            out[key] = out[key].strip() or None
    if "subdirectory" in out:
        out["subdirectory"] = _check_subdirectory(out["subdirectory"])
    if "default_branch" in out:
        out["default_branch"] = check_git_ref(out["default_branch"], "defaultBranch") or "main"
    return out


async def create_project(actor: Actor, values: Mapping[str, Any]) -> Project:
    actor.require(Action.EDIT_PROJECTS)
    unknown = set(values) - FIELDS
    if unknown:
        raise ValueError(f"unknown project fields {unknown}")
    data = _clean(actor, {"name": None, **values})
    _check_source(actor, data.get("repository_url"), data.get("bundled_path"))
    try:
        async with in_transaction():
            project = await Project.create(account_id=actor.account_id, **data)
            await audit.record(
                actor, "project.create", "project", project.id, {"name": project.name}
            )
    except IntegrityError:
        raise Conflict(f"a project named {data['name']!r} already exists", field="name") from None
    return project


async def update_project(actor: Actor, project_id: int, changes: Mapping[str, Any]) -> Project:
    actor.require(Action.EDIT_PROJECTS)
    unknown = set(changes) - FIELDS
    if unknown:
        raise ValueError(f"unknown project fields {unknown}")
    project = await actor.get(Project, project_id, what="project")
    data = _clean(actor, dict(changes))
    source_changed = "repository_url" in data or "bundled_path" in data
    for key, value in data.items():
        setattr(project, key, value)
    if source_changed:
        if "bundled_path" in data and "repository_url" not in data and data["bundled_path"]:
            project.repository_url = None
        if "repository_url" in data and "bundled_path" not in data and data["repository_url"]:
            project.bundled_path = None
        _check_source(actor, project.repository_url, project.bundled_path)
    try:
        async with in_transaction():
            await project.save()
            await audit.record(
                actor, "project.update", "project", project.id, {"fields": sorted(data)}
            )
    except IntegrityError:
        raise Conflict(f"a project named {project.name!r} already exists", field="name") from None
    return project


def tombstone(name: str, pk: int) -> str:
    """The name a deleted row takes, so its old name is free again."""
    return f"{name[:150]}~deleted-{pk}"


async def delete_project(actor: Actor, project_id: int) -> None:
    actor.require(Action.EDIT_PROJECTS)
    project = await actor.get(Project, project_id, what="project")
    now = datetime.now(UTC)
    async with in_transaction():
        await Job.filter(
            account_id=actor.account_id, project_id=project.id, deleted_at=None
        ).update(deleted_at=now, cron=None, next_tick_at=None)
        for env in await Environment.filter(
            account_id=actor.account_id, project_id=project.id, deleted_at=None
        ):
            env.deleted_at = now
            env.name = tombstone(env.name, env.id)
            await env.save(update_fields=["deleted_at", "name", "updated_at"])
        project.deleted_at = now
        project.name = tombstone(project.name, project.id)
        await project.save(update_fields=["deleted_at", "name", "updated_at"])
        await audit.record(actor, "project.delete", "project", project.id)
