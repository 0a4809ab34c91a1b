"""The Query root: node lookups, the viewer, and filtered connections per object type.

Resolvers stay thin: decode ids, ask the context for the caller's loaders,
and hand over to ``graph.prefetch`` and the loaders, which go through the scoped
queries of ``server.services.queries``. A malformed id is a BAD_USER_INPUT
error; a well-formed id that is missing or in another account is null.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry

from graph.context import Context
from graph.loaders import KIND_OF_TYPE, Loaders
from graph.prefetch import load_nodes, load_one, page
from graph.relay import Connection, Node, decode_any, decode_id, decode_optional
from graph.types.account import (
    Account,
    AccountRole,
    AccountRow,
    Membership,
    Token,
    TokenRow,
    UserRow,
    Viewer,
)
from graph.types.enums import CODE_OF_STATUS, EnvironmentKind, Role, RunStatus
from graph.types.job import Job
from graph.types.project import Environment, Project
from graph.types.run import Run
from graph.types.warehouse import Credentials, WarehouseConnection
from server.services import queries
from server.services.errors import DomainError, ValidationFailed
from server.services.permissions import Action, allowed

MAX_NODES = 100
AccountArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(
        description="Act in this account (default: X-Kiln-Account, or the only one)."
    ),
]


def ctx_of(info: strawberry.Info) -> Context:
    return info.context


async def _by_id(info: strawberry.Info, type_name: str, gid: strawberry.ID) -> Any:
    pk = decode_id(gid, type_name)
    loaders = await ctx_of(info).loaders()
    return await load_one(info._raw_info, loaders, KIND_OF_TYPE[type_name], pk)


@strawberry.input
class ProjectFilter:
    name: str | None = None


@strawberry.input
class EnvironmentFilter:
    project_id: strawberry.ID | None = None
    kind: EnvironmentKind | None = None
    name: str | None = None


@strawberry.input
class ConnectionFilter:
    name: str | None = None
    adapter_type: str | None = None


@strawberry.input
class CredentialsFilter:
    project_id: strawberry.ID | None = None


@strawberry.input
class JobFilter:
    project_id: strawberry.ID | None = None
    environment_id: strawberry.ID | None = None
    name: str | None = None


@strawberry.input
class RunFilter:
    job_id: strawberry.ID | None = None
    environment_id: strawberry.ID | None = None
    project_id: strawberry.ID | None = None
    status: list[RunStatus] | None = strawberry.field(
        default=None, description="One status or a list of them."
    )
    created_after: datetime | None = strawberry.field(default=None, description="Inclusive.")
    created_before: datetime | None = strawberry.field(default=None, description="Exclusive.")

    def filters(self) -> dict[str, Any]:
        return {
            "job_id": decode_optional(self.job_id, "Job", "filter.jobId"),
            "environment_id": decode_optional(
                self.environment_id, "Environment", "filter.environmentId"
            ),
            "project_id": decode_optional(self.project_id, "Project", "filter.projectId"),
            "status": [CODE_OF_STATUS[s] for s in self.status] if self.status else None,
            "created_after": self.created_after,
            "created_before": self.created_before,
        }


async def _viewer(ctx: Context) -> Viewer:
    principal = await ctx.principal()
    db = ctx.platform.db
    try:
        loaders: Loaders | None = await ctx.loaders()
    except DomainError:  # several accounts and none chosen: the viewer still answers
        loaders = None
    user = None
    if principal.user_id is not None:
        user = await queries.user_self(db, principal.user_id, record_class=UserRow)
    roles = {aid: principal.actor(aid).role for aid in principal.account_ids}
    accounts = await queries.accounts_of(db, roles, record_class=AccountRow)
    token = None
    if principal.token is not None and loaders is not None:
        token = await queries.own_token(db, principal.token.id, record_class=TokenRow)
    for row in (user, token, *accounts):
        if row is not None:
            row._l = loaders  # type: ignore[union-attr]
    actor = loaders.actor if loaders else None
    return Viewer(
        user=user,  # type: ignore[arg-type]
        token=token,  # type: ignore[arg-type]
        account=next((a for a in accounts if actor and a["id"] == actor.account_id), None),  # type: ignore[arg-type]
        role=Role(actor.role) if actor else None,
        permissions=[a.value for a in Action if actor and allowed(actor.role, a)],
        accounts=[AccountRole(account=a, role=Role(roles[a["id"]])) for a in accounts],  # type: ignore[arg-type]
    )


@strawberry.type
class Query:
    @strawberry.field(description="Any object by its global id; null if it does not exist.")
    async def node(self, info: strawberry.Info, id: strawberry.ID) -> Node | None:
        type_name, pk = decode_any(id)
        kind = KIND_OF_TYPE.get(type_name)
        loaders = await ctx_of(info).loaders()
        return None if kind is None else await load_one(info._raw_info, loaders, kind, pk)

    @strawberry.field(description=f"Objects by global id, in order (at most {MAX_NODES}).")
    async def nodes(self, info: strawberry.Info, ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise ValidationFailed(f"at most {MAX_NODES} ids", field="ids")
        decoded = [decode_any(gid, "ids") for gid in ids]
        loaders = await ctx_of(info).loaders()
        known = [(KIND_OF_TYPE[t], pk) for t, pk in decoded if t in KIND_OF_TYPE]
        rows = iter(await load_nodes(info._raw_info, loaders, known))
        return [next(rows) if t in KIND_OF_TYPE else None for t, _ in decoded]

    @strawberry.field(description="The caller: user or token, account, role and permissions.")
    async def viewer(self, info: strawberry.Info) -> Viewer:
        return await _viewer(ctx_of(info))

    @strawberry.field(description="The account this request acts in.")
    async def account(self, info: strawberry.Info, account_id: AccountArg = None) -> Account:
        loaders = await ctx_of(info).loaders(account_id)
        return await load_one(info._raw_info, loaders, "account", loaders.actor.account_id)  # type: ignore[return-value]

    @strawberry.field
    async def projects(
        self,
        info: strawberry.Info,
        first: int | None = 50,
        after: str | None = None,
        filter: ProjectFilter | None = None,
        account_id: AccountArg = None,
    ) -> Connection[Project]:
        loaders = await ctx_of(info).loaders(account_id)
        filters = {"name": filter.name if filter else None}
        return await page(info._raw_info, loaders, "project", filters, first, after)  # type: ignore[return-value]

    @strawberry.field
    async def project(self, info: strawberry.Info, id: strawberry.ID) -> Project | None:
        return await _by_id(info, "Project", id)

    @strawberry.field
    async def environments(
        self,
        info: strawberry.Info,
        first: int | None = 50,
        after: str | None = None,
        filter: EnvironmentFilter | None = None,
        account_id: AccountArg = None,
    ) -> Connection[Environment]:
        f = filter or EnvironmentFilter()
        filters = {
            "project_id": decode_optional(f.project_id, "Project", "filter.projectId"),
            "kind": f.kind.value if f.kind else None,
            "name": f.name,
        }
        loaders = await ctx_of(info).loaders(account_id)
        return await page(info._raw_info, loaders, "environment", filters, first, after)  # type: ignore[return-value]

    @strawberry.field
    async def environment(self, info: strawberry.Info, id: strawberry.ID) -> Environment | None:
        return await _by_id(info, "Environment", id)

    @strawberry.field(description="Warehouse connections.")
    async def connections(
        self,
        info: strawberry.Info,
        first: int | None = 50,
        after: str | None = None,
        filter: ConnectionFilter | None = None,
        account_id: AccountArg = None,
    ) -> Connection[WarehouseConnection]:
        f = filter or ConnectionFilter()
        loaders = await ctx_of(info).loaders(account_id)
        filters = {"name": f.name, "adapter_type": f.adapter_type}
        return await page(info._raw_info, loaders, "connection", filters, first, after)  # type: ignore[return-value]

    @strawberry.field(name="connection", description="A warehouse connection.")
    async def warehouse_connection(
        self, info: strawberry.Info, id: strawberry.ID
    ) -> WarehouseConnection | None:
        return await _by_id(info, "Connection", id)

    @strawberry.field(description="Credentials you may see (metadata only, never secrets).")
    async def credentials(
        self,
        info: strawberry.Info,
        first: int | None = 50,
        after: str | None = None,
        filter: CredentialsFilter | None = None,
        account_id: AccountArg = None,
    ) -> Connection[Credentials]:
        f = filter or CredentialsFilter()
        filters = {"project_id": decode_optional(f.project_id, "Project", "filter.projectId")}
        loaders = await ctx_of(info).loaders(account_id)
        return await page(info._raw_info, loaders, "credentials", filters, first, after)  # type: ignore[return-value]

    @strawberry.field
    async def jobs(
        self,
        info: strawberry.Info,
        first: int | None = 50,
        after: str | None = None,
        filter: JobFilter | None = None,
        account_id: AccountArg = None,
    ) -> Connection[Job]:
        f = filter or JobFilter()
        filters = {
            "project_id": decode_optional(f.project_id, "Project", "filter.projectId"),
            "environment_id": decode_optional(
                f.environment_id, "Environment", "filter.environmentId"
            ),
            "name": f.name,
        }
        loaders = await ctx_of(info).loaders(account_id)
        return await page(info._raw_info, loaders, "job", filters, first, after)  # type: ignore[return-value]

    @strawberry.field
    async def job(self, info: strawberry.Info, id: strawberry.ID) -> Job | None:
        return await _by_id(info, "Job", id)

    @strawberry.field(description="Runs, newest first.")
    async def runs(
        self,
        info: strawberry.Info,
        first: int | None = 50,
        after: str | None = None,
        filter: RunFilter | None = None,
        account_id: AccountArg = None,
    ) -> Connection[Run]:
        filters = filter.filters() if filter else {}
        loaders = await ctx_of(info).loaders(account_id)
        return await page(info._raw_info, loaders, "run", filters, first, after)  # type: ignore[return-value]

    @strawberry.field
    async def run(self, info: strawberry.Info, id: strawberry.ID) -> Run | None:
        return await _by_id(info, "Run", id)

    @strawberry.field(
        description="API tokens: all of the account's for token managers, "
        "else your own personal ones."
    )
    async def tokens(
        self,
        info: strawberry.Info,
        first: int | None = 50,
        after: str | None = None,
        account_id: AccountArg = None,
    ) -> Connection[Token]:
        loaders = await ctx_of(info).loaders(account_id)
        return await page(info._raw_info, loaders, "token", {}, first, after)  # type: ignore[return-value]

    @strawberry.field(description="The account's members and their roles.")
    async def memberships(
        self,
        info: strawberry.Info,
        first: int | None = 50,
        after: str | None = None,
        account_id: AccountArg = None,
    ) -> Connection[Membership]:
        loaders = await ctx_of(info).loaders(account_id)
        return await page(info._raw_info, loaders, "membership", {}, first, after)  # type: ignore[return-value]
