"""Environment variables for dbt: at project level, overridden per environment or per job.

Names follow dbt Cloud (``DBT_`` prefix). A name starting ``DBT_ENV_SECRET_``
is secret: the value is encrypted, managing it needs MANAGE_CREDENTIALS, and
no read path ever returns it. Setting a variable that exists in the same
scope replaces its value.
"""

from __future__ import annotations

import re

from tortoise.transactions import in_transaction

from server.crypto import Vault
from server.models import Environment, EnvVar, Job, Project
from server.services import audit
from server.services.actor import Actor
from server.services.errors import ValidationFailed
from server.services.permissions import Action

_NAME = re.compile(r"^DBT_[A-Z0-9_]{1,196}$")
SECRET_PREFIX = "DBT_ENV_SECRET_"
MAX_VALUE = 64 * 1024


def _required_action(name: str, job_id: int | None) -> Action:
    if name.startswith(SECRET_PREFIX):
        return Action.MANAGE_CREDENTIALS
    return Action.EDIT_JOBS if job_id is not None else Action.EDIT_PROJECTS


async def set_env_var(
    actor: Actor,
    vault: Vault,
    project_id: int,
    name: str,
    value: str,
    *,
    environment_id: int | None = None,
    job_id: int | None = None,
) -> EnvVar:
    name = (name or "").strip()
    if not _NAME.match(name):
        raise ValidationFailed(
            "name must start with DBT_ and hold only A-Z, 0-9 and _", field="name"
        )
    actor.require(_required_action(name, job_id))
    if not isinstance(value, str) or len(value) > MAX_VALUE or "\x00" in value:
        raise ValidationFailed(
            f"value must be text of at most {MAX_VALUE} characters", field="value"
        )
    project = await actor.get(Project, project_id, what="project")
    if environment_id is not None:
        env = await actor.get(Environment, environment_id, what="environment")
        if env.project_id != project.id:  # type: ignore[attr-defined]
            raise ValidationFailed(
                "the environment belongs to another project", field="environmentId"
            )
    if job_id is not None:
        job = await actor.get(Job, job_id, what="job")
        if job.project_id != project.id:  # type: ignore[attr-defined]
            raise ValidationFailed("the job belongs to another project", field="jobId")
    secret = name.startswith(SECRET_PREFIX)
    stored = vault.encrypt(value) if secret else value
    async with in_transaction():
        await Project.filter(id=project.id).select_for_update().first()  # one writer per project
        var = await EnvVar.filter(
            account_id=actor.account_id,
            project_id=project.id,
            environment_id=environment_id,
            job_id=job_id,
            name=name,
        ).first()
        if var is None:
            var = await EnvVar.create(
                account_id=actor.account_id,
                project_id=project.id,
                environment_id=environment_id,
                job_id=job_id,
                name=name,
                value=stored,
                is_secret=secret,
            )
        else:
            var.value = stored
            await var.save(update_fields=["value", "updated_at"])
        await audit.record(actor, "env_var.set", "env_var", var.id, {"name": name})
    return var


async def delete_env_var(actor: Actor, env_var_id: int) -> None:
    var = await actor.get(EnvVar, env_var_id, what="environment variable")
    actor.require(_required_action(var.name, var.job_id))  # type: ignore[attr-defined]
    async with in_transaction():
        await var.delete()
        await audit.record(actor, "env_var.delete", "env_var", env_var_id, {"name": var.name})
