"""Mutations on projects, environments and environment variables."""

from __future__ import annotations

from typing import Any

import strawberry

from graph.errors import UserError
from graph.loaders import Loaders
from graph.mutations.common import DeletePayload, provided, run_mutation
from graph.queries import AccountArg
from graph.relay import decode_id, decode_optional
from graph.types.enums import EnvironmentKind
from graph.types.project import Environment, EnvVar, Project
from server.ids import to_global_id
from server.services import env_vars, environments, projects


@strawberry.input
class CreateProjectInput:
    name: str
    description: str | None = strawberry.UNSET
    repository_url: str | None = strawberry.UNSET
    bundled_path: str | None = strawberry.field(
        default=strawberry.UNSET, description="A directory on the server (owner only)."
    )
    subdirectory: str | None = strawberry.UNSET
    default_branch: str | None = strawberry.UNSET


@strawberry.input
class UpdateProjectInput:
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    repository_url: str | None = strawberry.UNSET
    bundled_path: str | None = strawberry.UNSET
    subdirectory: str | None = strawberry.UNSET
    default_branch: str | None = strawberry.UNSET


@strawberry.type
class ProjectPayload:
    project: Project | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


def _environment_values(values: dict[str, Any]) -> dict[str, Any]:
    if isinstance(values.get("kind"), EnvironmentKind):
        values["kind"] = values["kind"].value
    for key, type_name, field in (
        ("connection_id", "Connection", "connectionId"),
        ("credentials_id", "Credentials", "credentialsId"),
    ):
        if key in values:
            values[key] = decode_optional(values[key], type_name, field)
    return values


@strawberry.input
class CreateEnvironmentInput:
    project_id: strawberry.ID
    name: str
    kind: EnvironmentKind | None = strawberry.UNSET
    deployment_type: str | None = strawberry.field(
        default=strawberry.UNSET, description="production or staging (deployment only)."
    )
    dbt_version: str | None = strawberry.UNSET
    connection_id: strawberry.ID | None = strawberry.UNSET
    credentials_id: strawberry.ID | None = strawberry.UNSET
    target_name: str | None = strawberry.UNSET
    threads: int | None = strawberry.UNSET
    custom_branch: str | None = strawberry.UNSET


@strawberry.input
class UpdateEnvironmentInput:
    name: str | None = strawberry.UNSET
    kind: EnvironmentKind | None = strawberry.UNSET
    deployment_type: str | None = strawberry.UNSET
    dbt_version: str | None = strawberry.UNSET
    connection_id: strawberry.ID | None = strawberry.UNSET
    credentials_id: strawberry.ID | None = strawberry.UNSET
    target_name: str | None = strawberry.UNSET
    threads: int | None = strawberry.UNSET
    custom_branch: str | None = strawberry.UNSET


@strawberry.type
class EnvironmentPayload:
    environment: Environment | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="Set a DBT_ variable for a project, one environment or one job.")
class SetEnvVarInput:
    project_id: strawberry.ID
    name: str
    value: str
    environment_id: strawberry.ID | None = None
    job_id: strawberry.ID | None = None


@strawberry.type
class EnvVarPayload:
    env_var: EnvVar | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ProjectMutations:
    @strawberry.mutation
    async def create_project(
        self, info: strawberry.Info, input: CreateProjectInput, account_id: AccountArg = None
    ) -> ProjectPayload:
        async def op(ld: Loaders) -> ProjectPayload:
            project = await projects.create_project(ld.actor, provided(input))
            return ProjectPayload(project=await ld.fresh("project", project.id))  # type: ignore[arg-type]

        return await run_mutation(info, ProjectPayload, op, account_id)

    @strawberry.mutation
    async def update_project(
        self, info: strawberry.Info, id: strawberry.ID, input: UpdateProjectInput
    ) -> ProjectPayload:
        async def op(ld: Loaders) -> ProjectPayload:
            pk = decode_id(id, "Project")
            await projects.update_project(ld.actor, pk, provided(input))
            return ProjectPayload(project=await ld.fresh("project", pk))  # type: ignore[arg-type]

        return await run_mutation(info, ProjectPayload, op)

    @strawberry.mutation(description="Soft-delete: its environments and jobs go too; runs stay.")
    async def delete_project(self, info: strawberry.Info, id: strawberry.ID) -> DeletePayload:
        async def op(ld: Loaders) -> DeletePayload:
            await projects.delete_project(ld.actor, decode_id(id, "Project"))
            return DeletePayload(deleted_id=id)

        return await run_mutation(info, DeletePayload, op)

    @strawberry.mutation
    async def create_environment(
        self, info: strawberry.Info, input: CreateEnvironmentInput
    ) -> EnvironmentPayload:
        async def op(ld: Loaders) -> EnvironmentPayload:
            values = _environment_values(provided(input))
            project_id = decode_id(values.pop("project_id"), "Project", "projectId")
            env = await environments.create_environment(ld.actor, project_id, values)
            return EnvironmentPayload(environment=await ld.fresh("environment", env.id))  # type: ignore[arg-type]

        return await run_mutation(info, EnvironmentPayload, op)

    @strawberry.mutation
    async def update_environment(
        self, info: strawberry.Info, id: strawberry.ID, input: UpdateEnvironmentInput
    ) -> EnvironmentPayload:
        async def op(ld: Loaders) -> EnvironmentPayload:
            pk = decode_id(id, "Environment")
            await environments.update_environment(
                ld.actor, pk, _environment_values(provided(input))
            )
            return EnvironmentPayload(environment=await ld.fresh("environment", pk))  # type: ignore[arg-type]

        return await run_mutation(info, EnvironmentPayload, op)

    @strawberry.mutation(description="Soft-delete: the environment's jobs go too; runs stay.")
    async def delete_environment(self, info: strawberry.Info, id: strawberry.ID) -> DeletePayload:
        async def op(ld: Loaders) -> DeletePayload:
            await environments.delete_environment(ld.actor, decode_id(id, "Environment"))
            return DeletePayload(deleted_id=id)

        return await run_mutation(info, DeletePayload, op)

    @strawberry.mutation(description="Create or replace a variable in its scope.")
    async def set_env_var(self, info: strawberry.Info, input: SetEnvVarInput) -> EnvVarPayload:
        async def op(ld: Loaders) -> EnvVarPayload:
            var = await env_vars.set_env_var(
                ld.actor,
                ld.vault,
                decode_id(input.project_id, "Project", "projectId"),
                input.name,
                input.value,
                environment_id=decode_optional(
                    input.environment_id, "Environment", "environmentId"
                ),
                job_id=decode_optional(input.job_id, "Job", "jobId"),
            )
            return EnvVarPayload(env_var=await ld.fresh("env_var", var.id))  # type: ignore[arg-type]

        return await run_mutation(info, EnvVarPayload, op)

    @strawberry.mutation
    async def delete_env_var(self, info: strawberry.Info, id: strawberry.ID) -> DeletePayload:
        async def op(ld: Loaders) -> DeletePayload:
            pk = decode_id(id, "EnvVar")
            await env_vars.delete_env_var(ld.actor, pk)
            return DeletePayload(deleted_id=to_global_id("EnvVar", pk))

        return await run_mutation(info, DeletePayload, op)
