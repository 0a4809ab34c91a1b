"""Mutations on API tokens and memberships."""

from __future__ import annotations

from datetime import datetime

import strawberry

from graph.errors import UserError
from graph.loaders import Loaders
from graph.mutations.common import DeletePayload, run_mutation
from graph.queries import AccountArg
from graph.relay import decode_id
from graph.types.account import Membership, Token
from graph.types.enums import Role
from server.services import members, tokens


@strawberry.input
class CreateTokenInput:
    name: str
    role: Role = strawberry.field(description="At most your own role.")
    personal: bool = strawberry.field(
        default=False,
        description="A token that acts as you (capped by your role) rather than the account's.",
    )
    expires_at: datetime | None = None


@strawberry.type
class CreateTokenPayload:
    token: Token | None = None
    secret: str | None = strawberry.field(
        default=None, description="The token itself: shown this once, never again."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class TokenPayload:
    token: Token | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="Add a user (created if the email is new) with a role.")
class AddMemberInput:
    email: str
    role: Role
    name: str | None = None
    password: str | None = strawberry.field(
        default=None, description="Initial password, for a user that does not exist yet."
    )


@strawberry.type
class MembershipPayload:
    membership: Membership | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AccessMutations:
    @strawberry.mutation
    async def create_token(
        self, info: strawberry.Info, input: CreateTokenInput, account_id: AccountArg = None
    ) -> CreateTokenPayload:
        async def op(ld: Loaders) -> CreateTokenPayload:
            issued = await tokens.create_token(
                ld.actor,
                name=input.name,
                role=input.role.value,
                personal=input.personal,
                expires_at=input.expires_at,
            )
            row = await ld.fresh("token", issued.token.id)
            return CreateTokenPayload(token=row, secret=issued.secret)  # type: ignore[arg-type]

        return await run_mutation(info, CreateTokenPayload, op, account_id)

    @strawberry.mutation(description="Revoke a token (idempotent).")
    async def revoke_token(self, info: strawberry.Info, id: strawberry.ID) -> TokenPayload:
        async def op(ld: Loaders) -> TokenPayload:
            token = await tokens.revoke_token(ld.actor, decode_id(id, "Token"))
            return TokenPayload(token=await ld.fresh("token", token.id))  # type: ignore[arg-type]

        return await run_mutation(info, TokenPayload, op)

    @strawberry.mutation(description="Invite or add a user to the account with a role.")
    async def add_member(
        self, info: strawberry.Info, input: AddMemberInput, account_id: AccountArg = None
    ) -> MembershipPayload:
        async def op(ld: Loaders) -> MembershipPayload:
            m = await members.add_member(
                ld.actor,
                input.email,
                input.role.value,
                name=input.name or "",
                password=input.password,
            )
            return MembershipPayload(membership=await ld.fresh("membership", m.id))  # type: ignore[arg-type]

        return await run_mutation(info, MembershipPayload, op, account_id)

    @strawberry.mutation
    async def change_member_role(
        self, info: strawberry.Info, id: strawberry.ID, role: Role
    ) -> MembershipPayload:
        async def op(ld: Loaders) -> MembershipPayload:
            m = await members.change_role(ld.actor, decode_id(id, "Membership"), role.value)
            return MembershipPayload(membership=await ld.fresh("membership", m.id))  # type: ignore[arg-type]

        return await run_mutation(info, MembershipPayload, op)

    @strawberry.mutation(description="Remove a member (or leave, with your own membership).")
    async def remove_member(self, info: strawberry.Info, id: strawberry.ID) -> DeletePayload:
        async def op(ld: Loaders) -> DeletePayload:
            await members.remove_member(ld.actor, decode_id(id, "Membership"))
            return DeletePayload(deleted_id=id)

        return await run_mutation(info, DeletePayload, op)
