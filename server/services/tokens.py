"""API tokens: service tokens (the account's) and personal tokens (act as their user).

Nobody can mint a token stronger than themselves: the role given is at most
the creator's. The secret is returned once by :func:`create_token` and only
its hash is stored. Revoking is idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.transactions import in_transaction

from server.models import Account, Role, Token, User
from server.services import accounts, audit, auth
from server.services.accounts import IssuedToken, check_role
from server.services.actor import Actor
from server.services.errors import Forbidden, NotFound, ValidationFailed
from server.services.permissions import RANK, Action, allowed


def check_grantable(actor: Actor, role: str) -> str:
    """``role`` if the actor may hand it out (at most their own rank)."""
    check_role(role)
    if RANK[Role(role)] > RANK[Role(actor.role)]:
        raise Forbidden(f"a {actor.role} cannot grant the {role} role", field="role")
    return role


async def create_token(
    actor: Actor,
    *,
    name: str,
    role: str,
    personal: bool = False,
    expires_at: datetime | None = None,
) -> IssuedToken:
    if personal:
        actor.require(Action.READ)
        if actor.user_id is None:
            raise ValidationFailed(
                "a service token has no user to own a personal token", field="personal"
            )
    else:
        actor.require(Action.MANAGE_TOKENS)
    check_grantable(actor, role)
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise ValidationFailed("expiresAt must be in the future", field="expiresAt")
    account = await Account.get(id=actor.account_id)
    user = await User.get(id=actor.user_id) if personal else None
    async with in_transaction():
        issued = await accounts.create_token(
            account, name=name, role=role, user=user, expires_at=expires_at
        )
        await audit.record(
            actor,
            "token.create",
            "token",
            issued.token.id,
            {"name": issued.token.name, "role": role, "kind": issued.token.kind},
        )
    return issued


async def revoke_token(actor: Actor, token_id: int) -> Token:
    token = await Token.filter(account_id=actor.account_id, id=token_id).first()
    own = token is not None and token.user_id is not None and token.user_id == actor.user_id  # type: ignore[attr-defined]
    if token is None or not (own or allowed(actor.role, Action.MANAGE_TOKENS)):
        raise NotFound("token not found")  # others' personal tokens are not even visible
    if token.revoked_at is None:
        async with in_transaction():
            token.revoked_at = datetime.now(UTC)
            await token.save(update_fields=["revoked_at"])
            await audit.record(actor, "token.revoke", "token", token.id, {"name": token.name})
        auth.forget_credentials()
    return token
