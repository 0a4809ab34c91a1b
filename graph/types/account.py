"""Accounts, users, memberships, API tokens, and the viewer (the caller)."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from graph.relay import Node
from graph.rows import Row, backed_by, column, computed, relation
from graph.types.enums import Role


class AccountRow(Row):
    TYPE = "Account"
    KIND = "account"
    BASE = ("id",)

    name = column("name")
    run_slots = column("run_slots")
    created_at = column("created_at")


class UserRow(Row):
    TYPE = "User"
    KIND = "user"
    BASE = ("id",)

    email = column("email")
    name = column("name")
    is_active = column("is_active")
    created_at = column("created_at")


class MembershipRow(Row):
    TYPE = "Membership"
    KIND = "membership"

    role = column("role")
    created_at = column("created_at")

    user = relation("user", "user_id")
    account = relation("account", "account_id")


class TokenRow(Row):
    TYPE = "Token"
    KIND = "token"

    name = column("name")
    kind = column("kind")
    role = column("role")
    prefix = column("prefix")
    created_at = column("created_at")
    last_used_at = column("last_used_at")
    expires_at = column("expires_at")
    revoked_at = column("revoked_at")

    user = relation("user", "user_id")

    @computed("revoked_at", "expires_at")
    def is_active(self) -> bool:
        if self["revoked_at"] is not None:
            return False
        expires = self["expires_at"]
        return expires is None or expires > datetime.now(UTC)


@strawberry.type(description="A tenant: everything else belongs to exactly one account.")
@backed_by(AccountRow)
class Account(Node):
    database_id: int
    name: str
    run_slots: int = strawberry.field(description="How many runs may execute at once.")
    created_at: datetime


@strawberry.type(description="A person who can log in; visible to the accounts they belong to.")
@backed_by(UserRow)
class User(Node):
    database_id: int
    email: str
    name: str
    is_active: bool
    created_at: datetime


@strawberry.type(description="A user's role in an account.")
@backed_by(MembershipRow)
class Membership(Node):
    database_id: int
    role: Role
    user: User
    account: Account
    created_at: datetime


@strawberry.type(description="An API token; its secret is shown once, when it is created.")
@backed_by(TokenRow)
class Token(Node):
    database_id: int
    name: str
    kind: str = strawberry.field(description="service (the account's) or personal (a user's).")
    role: Role
    prefix: str = strawberry.field(description="The first characters, to recognise it.")
    user: User | None
    is_active: bool
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


@strawberry.type(description="An account the viewer belongs to, with their role there.")
class AccountRole:
    account: Account
    role: Role


@strawberry.type(description="Who is calling: their user or token, account and role.")
class Viewer:
    user: User | None = strawberry.field(description="Null for a service token.")
    token: Token | None = strawberry.field(description="Set when the caller used a token.")
    account: Account | None = strawberry.field(
        description="The account this request acts in; null until one is chosen "
        "(X-Kiln-Account header) when the user belongs to several."
    )
    role: Role | None
    permissions: list[str] = strawberry.field(
        description="What the role allows in this account (read, trigger_run, edit_jobs...)."
    )
    accounts: list[AccountRole]
