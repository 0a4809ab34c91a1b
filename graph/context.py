"""The GraphQL context: who is calling (resolved once, on first use) and their loaders.

Transports build a :class:`Context` from what the request presented (see
``server.services.auth``); resolvers ask it for :meth:`Context.loaders`,
which authenticates, picks the account and returns that account's loaders.
Introspection and ``login`` never ask, so they work without credentials.

The account a request acts in: a token's own account; for a user session the
``accountId`` argument of the field, else the ``X-Kiln-Account`` header, else
the user's only account.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from graph.loaders import Loaders
from graph.relay import decode_id
from server.services.actor import Principal
from server.services.auth import SESSION_COOKIE, SESSION_TTL, Presented, authenticate
from server.services.errors import NotFound, Unauthenticated, ValidationFailed

if TYPE_CHECKING:
    from server.platform import Platform


class CookieSink(Protocol):
    """What the transport's response offers for cookies (aiohttp's Response does)."""

    def set_cookie(self, name: str, value: str, **kwargs: Any) -> None: ...

    def del_cookie(self, name: str, **kwargs: Any) -> None: ...


class Context:
    def __init__(
        self,
        platform: Platform,
        presented: Presented,
        *,
        account_header: str | None = None,
        response: CookieSink | None = None,
        secure: bool = False,
        request: Any = None,
    ) -> None:
        self.platform = platform
        self.presented = presented
        self.account_header = account_header or None
        self.response = response
        self.secure = secure
        self.request = request
        self.connection_params: dict[str, Any] | None = None  # set by websocket transports
        self._principal: asyncio.Future[Principal | None] | None = None
        self._loaders: dict[int, Loaders] = {}

    def reauthenticate(self, presented: Presented) -> None:
        """Use other credentials from now on (a websocket's ``connection_init``)."""
        self.presented = presented
        self._principal = None
        self._loaders.clear()

    def release(self) -> None:
        """The operation has answered: drop its loaded rows (see :meth:`Loaders.release`)."""
        for loaders in self._loaders.values():
            loaders.release()
        self._loaders.clear()

    async def principal(self) -> Principal:
        """The authenticated caller; Unauthenticated if credentials are missing or invalid."""
        if self._principal is None:
            self._principal = asyncio.ensure_future(authenticate(self.presented))
        principal = await self._principal
        if principal is None:
            if self.presented.present:
                raise Unauthenticated("invalid, expired or revoked credentials")
            raise Unauthenticated(
                "authentication required: send 'Authorization: Bearer <token>' or log in"
            )
        return principal

    async def loaders(self, account_id: str | None = None) -> Loaders:
        """The caller's loaders in the account the request acts in (see the module doc)."""
        principal = await self.principal()
        gid = account_id or self.account_header
        pk = decode_id(gid, "Account", "accountId") if gid else None
        if pk is None and principal.token is None and len(principal.memberships) != 1:
            if not principal.memberships:
                raise NotFound("you are not a member of any account")
            raise ValidationFailed(
                "you belong to several accounts: pass accountId or the X-Kiln-Account header",
                field="accountId",
                code="account_required",
            )
        try:
            actor = principal.actor(pk)
        except NotFound:
            raise NotFound("account not found") from None
        loaders = self._loaders.get(actor.account_id)
        if loaders is None or loaders.actor != actor:
            loaders = self._loaders[actor.account_id] = Loaders(actor, self.platform)
        return loaders

    # --------------------------------------------------------------- browser sessions

    def set_session_cookie(self, secret: str) -> None:
        if self.response is not None:
            self.response.set_cookie(
                SESSION_COOKIE,
                secret,
                max_age=int(SESSION_TTL.total_seconds()),
                path="/",
                httponly=True,
                samesite="Lax",
                secure=self.secure,
            )

    def clear_session_cookie(self) -> None:
        if self.response is not None:
            self.response.del_cookie(SESSION_COOKIE, path="/")
