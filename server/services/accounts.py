"""Accounts, users, memberships and API tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from server import crypto
from server.models import Account, Membership, Role, Token, User
from server.services.errors import Conflict, NotFound, ValidationFailed

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ROLES = tuple(r.value for r in Role)


def check_role(role: str, field: str = "role") -> str:
    if role not in ROLES:
        raise ValidationFailed(f"unknown role {role!r}; one of {', '.join(ROLES)}", field=field)
    return role


def check_name(name: str, field: str = "name", max_length: int = 200) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed(f"{field} must not be empty", field=field)
    if len(name) > max_length:
        raise ValidationFailed(f"{field} is longer than {max_length} characters", field=field)
    return name


async def create_account(name: str, *, run_slots: int = 5) -> Account:
    name = check_name(name)
    try:
        return await Account.create(name=name, run_slots=run_slots)
    except IntegrityError:
        raise Conflict(f"an account named {name!r} already exists", field="name") from None


async def get_account_by_name(name: str) -> Account:
    account = await Account.get_or_none(name=name)
    if account is None:
        raise NotFound(f"no account named {name!r}")
    return account


async def create_user(email: str, *, name: str = "", password: str | None = None) -> User:
    email = (email or "").strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise ValidationFailed(f"invalid email address {email!r}", field="email")
    if password is not None and len(password) < 8:
        raise ValidationFailed("password must be at least 8 characters", field="password")
    pw_hash = crypto.hash_password(password) if password else None
    try:
        return await User.create(email=email, name=name, password_hash=pw_hash)
    except IntegrityError:
        raise Conflict(f"a user with email {email!r} already exists", field="email") from None


async def add_member(account: Account, user: User, role: str) -> Membership:
    check_role(role)
    async with in_transaction():
        existing = await Membership.get_or_none(account_id=account.id, user_id=user.id)
        if existing is not None:
            if existing.role != role:
                existing.role = role
                await existing.save(update_fields=["role", "updated_at"])
            return existing
        return await Membership.create(account=account, user=user, role=role)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: Token
    secret: str  # shown once, never stored


async def create_token(
    account: Account,
    *,
    name: str,
    role: str,
    user: User | None = None,
    expires_at: datetime | None = None,
) -> IssuedToken:
    name = check_name(name)
    check_role(role)
    secret = crypto.new_token("api")
    token = await Token.create(
        account=account,
        user=user,
        name=name,
        kind="personal" if user else "service",
        role=role,
        token_hash=crypto.hash_token(secret),
        prefix=secret[:10],
        expires_at=expires_at,
    )
    return IssuedToken(token=token, secret=secret)


async def token_by_secret(secret: str) -> Token | None:
    """The live token with this secret, else None (revoked and expired ones are not live)."""
    if not secret or len(secret) > 200:
        return None
    token = await Token.get_or_none(token_hash=crypto.hash_token(secret))
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= datetime.now(UTC):
        return None
    return token
