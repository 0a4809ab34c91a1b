"""Browser login: ``login`` sets the HttpOnly session cookie, ``logout`` ends it.

These two work without credentials; everything else needs them.
"""

from __future__ import annotations

import strawberry

from graph.context import Context
from graph.errors import UserError, user_error
from graph.types.account import User, UserRow
from server.services import auth, queries
from server.services.errors import DomainError


@strawberry.type
class LoginPayload:
    user: User | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class LogoutPayload:
    ok: bool = False
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AuthMutations:
    @strawberry.mutation(description="Log in with email and password; sets the session cookie.")
    async def login(self, info: strawberry.Info, email: str, password: str) -> LoginPayload:
        ctx: Context = info.context
        try:
            issued = await auth.login(email, password)
        except DomainError as exc:
            return LoginPayload(errors=[user_error(exc)])
        ctx.set_session_cookie(issued.secret)
        user = await queries.user_self(ctx.platform.db, issued.user.id, record_class=UserRow)
        return LoginPayload(user=user)  # type: ignore[arg-type]

    @strawberry.mutation(description="End this browser session and clear its cookie.")
    async def logout(self, info: strawberry.Info) -> LogoutPayload:
        ctx: Context = info.context
        ended = await auth.logout(ctx.presented.session or "")
        ctx.clear_session_cookie()
        return LogoutPayload(ok=ended)
