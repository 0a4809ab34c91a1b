"""/ide/<session>/ws: who may reach which develop server (the proxy's resolver).

The raw-byte relay (:mod:`server.gateway.ide_proxy`) asks :func:`make_resolver`'s
resolver for every IDE upgrade. It authenticates the caller (``Authorization:
Bearer|Token`` for programs, the ``kiln_session`` cookie for browsers — with
an ``Origin`` check against cross-site websocket hijacking), finds the
session *of that user* (any other id is 404, so sessions of others cannot be
discovered), requires it to be ready (409 with its state otherwise), and
hands back the develop server's address and secret.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from server.gateway.ide_proxy import IdeRejection, IdeTarget, RequestHead, Resolver
from server.ids import InvalidId, from_global_id
from server.services.actor import Principal, principal_from_session, principal_from_token

SESSION_COOKIE = "kiln_session"


def parse_session_id(raw: str) -> int | None:
    if raw.isdigit():
        return int(raw)
    try:
        return from_global_id(raw, "IdeSession")[1]
    except InvalidId:
        return None


async def authenticate(headers) -> tuple[Principal | None, bool]:
    """(principal, by_cookie) from a request's headers."""
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return await principal_from_token(value.strip()), False
    raw_cookie = headers.get("Cookie")
    if raw_cookie:
        cookie = SimpleCookie()
        try:
            cookie.load(raw_cookie)
        except Exception:
            return None, True
        morsel = cookie.get(SESSION_COOKIE)
        if morsel is not None:
            return await principal_from_session(morsel.value), True
    return None, False


def same_origin(headers) -> bool:
    origin = headers.get("Origin")
    if not origin:
        return False
    return urlsplit(origin).netloc == headers.get("Host", "")


def make_resolver(broker) -> Resolver:
    async def resolve(raw_id: str, head: RequestHead) -> IdeTarget | IdeRejection:
        principal, by_cookie = await authenticate(head.headers)
        if principal is None:
            return IdeRejection(401, "authentication required")
        if by_cookie and not same_origin(head.headers):
            return IdeRejection(403, "cross-origin websocket refused")
        if principal.user_id is None:
            return IdeRejection(403, "IDE sessions belong to users: use a personal token")
        session_id = parse_session_id(raw_id)
        found = await broker.target(principal.user_id, session_id) if session_id else None
        if found is None:
            return IdeRejection(404, "IDE session not found")
        session, secret = found
        if session.state != "ready" or not session.endpoint_host or not session.endpoint_port:
            return IdeRejection(409, f"IDE session is {session.state}, not ready")
        return IdeTarget(
            host=session.endpoint_host,
            port=session.endpoint_port,
            secret=secret,
            session_id=str(session.id),
            on_activity=lambda n, sid=session.id: broker.touch(sid, n),
        )

    return resolve
