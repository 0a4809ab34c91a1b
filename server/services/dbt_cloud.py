"""Reads and small writes the dbt Cloud compatible REST API needs beyond the shared services.

dbt Cloud's lists are offset pages with an ``order_by`` of the client's
choice, which the keyset pages of :mod:`server.services.queries` do not
offer; a job stores dbt Cloud's ``triggers`` object as given, which
:mod:`server.services.jobs` does not set. Everything is scoped by the actor's
account and checks the same permissions as the shared services.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tortoise.models import Model

from server.models import Account, Environment, Job, Project, Run, RunStatus, RunStep
from server.services import audit
from server.services.actor import Actor, Principal
from server.services.errors import NotFound, ValidationFailed
from server.services.permissions import Action

MAX_LIMIT = 100
M = TypeVar("M", bound=Model)

JOB_ORDER = {"id": "id", "name": "name", "created_at": "created_at", "updated_at": "updated_at"}
RUN_ORDER = {
    "id": "id",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "started_at": "started_at",
    "finished_at": "finished_at",
    "dequeued_at": "dequeued_at",
    "status": "status",
    "job_definition_id": "job_id",
}
TRIGGER_FLAGS = (
    "github_webhook",
    "git_provider_webhook",
    "schedule",
    "on_merge",
    "custom_branch_only",
)


@dataclass(frozen=True, slots=True)
class OffsetPage(Generic[M]):
    rows: list[M]
    total: int


def check_order(order_by: str, allowed: Mapping[str, str]) -> list[str]:
    """``-created_at`` → tortoise ordering, with ``id`` as the tie breaker."""
    desc = order_by.startswith("-")
    name = order_by[1:] if desc else order_by
    column = allowed.get(name)
    if column is None:
        raise ValidationFailed(
            f"order_by must be one of {', '.join(sorted(allowed))} (prefix - to reverse)",
            field="order_by",
        )
    sign = "-" if desc else ""
    return [f"{sign}{column}"] if column == "id" else [f"{sign}{column}", f"{sign}id"]


def check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    if not 0 <= offset < 2**31:
        raise ValidationFailed("offset must be between 0 and 2147483647", field="offset")


async def accounts_of(principal: Principal) -> list[Account]:
    """The accounts the caller can reach (a token: its own only)."""
    return await Account.filter(id__in=principal.account_ids).order_by("id")


async def get_account(actor: Actor) -> Account:
    actor.require(Action.READ)
    account = await Account.get_or_none(id=actor.account_id)
    if account is None:
        raise NotFound("account not found")
    return account


async def list_jobs(
    actor: Actor,
    *,
    project_id: int | None = None,
    environment_id: int | None = None,
    order_by: str = "id",
    limit: int = MAX_LIMIT,
    offset: int = 0,
) -> OffsetPage[Job]:
    actor.require(Action.READ)
    order = check_order(order_by, JOB_ORDER)
    check_page(limit, offset)
    q = actor.scoped(Job).filter(deleted_at__isnull=True)
    if project_id is not None:
        q = q.filter(project_id=project_id)
    if environment_id is not None:
        q = q.filter(environment_id=environment_id)
    total = await q.count()
    return OffsetPage(list(await q.order_by(*order).offset(offset).limit(limit)), total)


async def list_runs(
    actor: Actor,
    *,
    job_id: int | None = None,
    environment_id: int | None = None,
    project_id: int | None = None,
    statuses: Sequence[int] | None = None,
    order_by: str = "id",
    limit: int = MAX_LIMIT,
    offset: int = 0,
) -> OffsetPage[Run]:
    actor.require(Action.READ)
    order = check_order(order_by, RUN_ORDER)
    check_page(limit, offset)
    q = actor.scoped(Run)
    if job_id is not None:
        q = q.filter(job_id=job_id)
    if environment_id is not None:
        q = q.filter(environment_id=environment_id)
    if project_id is not None:
        q = q.filter(project_id=project_id)
    if statuses is not None:
        q = q.filter(status__in=list(statuses))
    total = await q.count()
    return OffsetPage(list(await q.order_by(*order).offset(offset).limit(limit)), total)


async def by_ids(actor: Actor, model: type[M], ids: Sequence[int]) -> dict[int, M]:
    """Rows of the actor's account by id (deleted ones too: a run shows its deleted job)."""
    actor.require(Action.READ)
    if not ids:
        return {}
    return {r.id: r for r in await actor.scoped(model).filter(id__in=sorted(set(ids)))}


async def steps_of(actor: Actor, run_ids: Sequence[int]) -> dict[int, list[RunStep]]:
    actor.require(Action.READ)
    out: dict[int, list[RunStep]] = {r: [] for r in run_ids}
    if run_ids:
        for s in await actor.scoped(RunStep).filter(run_id__in=list(run_ids)).order_by(
            "run_id", "index"
        ):
            out[s.run_id].append(s)  # type: ignore[attr-defined]
    return out


async def latest_run(actor: Actor, job_id: int, *, status: RunStatus | None = None) -> Run:
    """The job's newest run (of ``status`` if given), NotFound if it has none."""
    actor.require(Action.READ)
    job = await actor.get(Job, job_id, what="job")
    q = actor.scoped(Run).filter(job_id=job.id)
    if status is not None:
        q = q.filter(status=status)
    run = await q.order_by("-created_at", "-id").first()
    if run is None:
        what = f"{status.humanized.lower()} run" if status is not None else "run"
        raise NotFound(f"job {job.id} has no {what}")
    return run


def check_triggers(value: Any) -> dict[str, bool]:
    """dbt Cloud's ``triggers`` object: known flags as booleans, others kept as given."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationFailed("triggers must be an object", field="triggers")
    out: dict[str, Any] = {}
    for key, flag in value.items():
        if not isinstance(key, str) or len(key) > 100:
            raise ValidationFailed("triggers: invalid key", field="triggers")
        if key in TRIGGER_FLAGS and not isinstance(flag, bool):
            raise ValidationFailed(f"triggers.{key} must be true or false", field="triggers")
        if not isinstance(flag, bool | int | str | None):
            raise ValidationFailed(f"triggers.{key} must be a scalar", field="triggers")
        out[key] = flag
    return out


async def set_job_triggers(actor: Actor, job_id: int, triggers: Mapping[str, Any]) -> Job:
    """Store dbt Cloud's ``triggers`` object on the job (its ``schedule`` flag is applied
    to the cron by the caller through ``jobs.update_job``)."""
    actor.require(Action.EDIT_JOBS)
    job = await actor.get(Job, job_id, what="job")
    job.triggers = check_triggers(triggers)
    await job.save(update_fields=["triggers", "updated_at"])
    await audit.record(actor, "job.update", "job", job.id, {"fields": ["triggers"]})
    return job


async def project_of_environment(actor: Actor, environment_id: int) -> int:
    """The environment's project (NotFound if it is not the actor's)."""
    env = await actor.get(Environment, environment_id, what="environment")
    return env.project_id  # type: ignore[attr-defined]


async def check_project(actor: Actor, project_id: int) -> Project:
    return await actor.get(Project, project_id, what="project")
