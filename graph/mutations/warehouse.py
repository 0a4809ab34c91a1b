"""Mutations on warehouse connections and credentials (secrets are write-only)."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from graph.errors import UserError
from graph.loaders import Loaders
from graph.mutations.common import DeletePayload, provided, run_mutation
from graph.queries import AccountArg
from graph.relay import decode_id
from graph.types.warehouse import Credentials, WarehouseConnection
from server.services import connections, credentials


@strawberry.input
class CreateConnectionInput:
    name: str
    adapter_type: str
    details: JSON | None = strawberry.field(
        default=strawberry.UNSET, description="Non-secret settings; secrets go in credentials."
    )


@strawberry.input
class UpdateConnectionInput:
    name: str | None = strawberry.UNSET
    adapter_type: str | None = strawberry.UNSET
    details: JSON | None = strawberry.UNSET


@strawberry.type
class ConnectionPayload:
    connection: WarehouseConnection | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class CreateCredentialsInput:
    project_id: strawberry.ID
    adapter_type: str
    name: str | None = strawberry.UNSET
    fields: JSON | None = strawberry.field(
        default=strawberry.UNSET, description="Non-secret fields (schema, user, threads...)."
    )
    secrets: JSON | None = strawberry.field(
        default=strawberry.UNSET,
        description="Secret fields (password, private_key...): stored encrypted, never returned.",
    )
    for_user: bool = strawberry.field(
        default=False, description="Your own development credentials rather than the project's."
    )


@strawberry.input
class UpdateCredentialsInput:
    name: str | None = strawberry.UNSET
    adapter_type: str | None = strawberry.UNSET
    fields: JSON | None = strawberry.UNSET
    secrets: JSON | None = strawberry.field(
        default=strawberry.UNSET,
        description="Fields to set; a field set to null is removed; others are kept.",
    )


@strawberry.type
class CredentialsPayload:
    credentials: Credentials | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WarehouseMutations:
    @strawberry.mutation
    async def create_connection(
        self, info: strawberry.Info, input: CreateConnectionInput, account_id: AccountArg = None
    ) -> ConnectionPayload:
        async def op(ld: Loaders) -> ConnectionPayload:
            conn = await connections.create_connection(ld.actor, provided(input))
            return ConnectionPayload(connection=await ld.fresh("connection", conn.id))  # type: ignore[arg-type]

        return await run_mutation(info, ConnectionPayload, op, account_id)

    @strawberry.mutation
    async def update_connection(
        self, info: strawberry.Info, id: strawberry.ID, input: UpdateConnectionInput
    ) -> ConnectionPayload:
        async def op(ld: Loaders) -> ConnectionPayload:
            pk = decode_id(id, "Connection")
            await connections.update_connection(ld.actor, pk, provided(input))
            return ConnectionPayload(connection=await ld.fresh("connection", pk))  # type: ignore[arg-type]

        return await run_mutation(info, ConnectionPayload, op)

    @strawberry.mutation(description="Refused while a live environment uses the connection.")
    async def delete_connection(self, info: strawberry.Info, id: strawberry.ID) -> DeletePayload:
        async def op(ld: Loaders) -> DeletePayload:
            await connections.delete_connection(ld.actor, decode_id(id, "Connection"))
            return DeletePayload(deleted_id=id)

        return await run_mutation(info, DeletePayload, op)

    @strawberry.mutation
    async def create_credentials(
        self, info: strawberry.Info, input: CreateCredentialsInput
    ) -> CredentialsPayload:
        async def op(ld: Loaders) -> CredentialsPayload:
            values = provided(input)
            project_id = decode_id(values.pop("project_id"), "Project", "projectId")
            for_user = values.pop("for_user", False)
            creds = await credentials.create_credentials(
                ld.actor, ld.vault, project_id, values, for_user=for_user
            )
            return CredentialsPayload(credentials=await ld.fresh("credentials", creds.id))  # type: ignore[arg-type]

        return await run_mutation(info, CredentialsPayload, op)

    @strawberry.mutation
    async def update_credentials(
        self, info: strawberry.Info, id: strawberry.ID, input: UpdateCredentialsInput
    ) -> CredentialsPayload:
        async def op(ld: Loaders) -> CredentialsPayload:
            pk = decode_id(id, "Credentials")
            await credentials.update_credentials(ld.actor, ld.vault, pk, provided(input))
            return CredentialsPayload(credentials=await ld.fresh("credentials", pk))  # type: ignore[arg-type]

        return await run_mutation(info, CredentialsPayload, op)

    @strawberry.mutation(description="Refused while a live environment uses them.")
    async def delete_credentials(self, info: strawberry.Info, id: strawberry.ID) -> DeletePayload:
        async def op(ld: Loaders) -> DeletePayload:
            await credentials.delete_credentials(ld.actor, decode_id(id, "Credentials"))
            return DeletePayload(deleted_id=id)

        return await run_mutation(info, DeletePayload, op)
