"""The caller of a service: who they are, in which account, with which role.

An :class:`Actor` is resolved once per request (token, session cookie or
websocket ``connection_init``) and passed to every service function. Service
functions scope every query by ``actor.account_id`` through :func:`scoped`,
so an object of another account is never found, counted or guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from tortoise.models import Model
from tortoise.queryset import QuerySet

from server import crypto
from server.models import LoginSession, Membership, Token
from server.services.accounts import token_by_secret
from server.services.errors import NotFound
from server.services.permissions import Action, lower_role, require

M = TypeVar("M", bound=Model)


@dataclass(frozen=True, slots=True)
class Actor:
    account_id: int
    role: str
    user_id: int | None = None
    token_id: int | None = None
    kind: str = "user"  # user (session) | token | system

    def require(self, action: Action) -> None:
        require(self.role, action)

    def scoped(self, model: type[M]) -> QuerySet[M]:
        """Rows of ``model`` that belong to this actor's account."""
        return model.filter(account_id=self.account_id)

    async def get(self, model: type[M], pk: int, *, what: str | None = None) -> M:
        """The row, or NotFound when it is missing *or* in another account."""
        obj = await model.filter(account_id=self.account_id, id=pk).first()
        if obj is None or getattr(obj, "deleted_at", None) is not None:
            raise NotFound(f"{what or model.__name__} not found")
        return obj


def system_actor(account_id: int) -> Actor:
    """The platform itself acting in an account (scheduler, chained jobs)."""
    return Actor(account_id=account_id, role="owner", kind="system")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller before an account is chosen."""

    user_id: int | None
    token: Token | None
    memberships: dict[int, str]  # account id -> role

    def actor(self, account_id: int | None = None) -> Actor:
        """The actor in ``account_id`` (default: the token's or the only account)."""
        if self.token is not None:
            acct = self.token.account_id  # type: ignore[attr-defined]
            if account_id is not None and account_id != acct:
                raise NotFound("account not found")
            role = self.token.role
            if self.token.user_id is not None:  # type: ignore[attr-defined]
                member_role = self.memberships.get(acct)
                if member_role is None:
                    raise NotFound("account not found")
                role = lower_role(role, member_role)
            return Actor(acct, role, self.user_id, self.token.id, "token")
        if account_id is None:
            if len(self.memberships) != 1:
                raise NotFound("choose an account")
            account_id = next(iter(self.memberships))
        role = self.memberships.get(account_id)
        if role is None:
            raise NotFound("account not found")
        return Actor(account_id, role, self.user_id, None, "user")

    @property
    def account_ids(self) -> list[int]:
        if self.token is not None:
            return [self.token.account_id]  # type: ignore[attr-defined]
        return sorted(self.memberships)


async def _memberships(user_id: int) -> dict[int, str]:
    rows = await Membership.filter(user_id=user_id).values_list("account_id", "role")
    return {a: r for a, r in rows}


async def principal_from_token(secret: str) -> Principal | None:
    token = await token_by_secret(secret)
    if token is None:
        return None
    user_id = token.user_id  # type: ignore[attr-defined]
    memberships = await _memberships(user_id) if user_id else {}
    if user_id is None:
        memberships = {token.account_id: token.role}  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        await Token.filter(id=token.id).update(last_used_at=now)
    return Principal(user_id=user_id, token=token, memberships=memberships)


async def principal_from_session(secret: str) -> Principal | None:
    if not secret or len(secret) > 200:
        return None
    session = await LoginSession.get_or_none(token_hash=crypto.hash_token(secret))
    if session is None or session.expires_at <= datetime.now(UTC):
        return None
    user_id = session.user_id  # type: ignore[attr-defined]
    return Principal(user_id=user_id, token=None, memberships=await _memberships(user_id))
