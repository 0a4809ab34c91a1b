"""Authentication: browser login sessions and the credentials a request carries.

Every transport resolves its caller here, so the rules are the same for
HTTP, websockets and the IDE proxy:

* ``Authorization: Bearer <token>`` or ``Token <token>``: an API token;
* the ``kiln_session`` cookie: a login session (:func:`login`);
* a websocket ``connection_init`` payload ``{"authorization": "Bearer ..."}``
  or ``{"token": "..."}`` (:func:`principal_from_params`).

Sessions store only a hash of their secret, like tokens. A wrong email and a
wrong password fail the same way and take the same time.

:func:`authenticate` remembers a successful lookup for ``CACHE_TTL`` seconds
(never past the token's expiry), so a busy client costs no authentication
query per request. Revoking a token, logging out or changing a membership
clears this process's cache at once; other processes of the same
deployment notice within ``CACHE_TTL``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from server import crypto
from server.models import LoginSession, User
from server.services.actor import Principal, principal_from_session, principal_from_token
from server.services.errors import Unauthenticated

SESSION_COOKIE = "kiln_session"
SESSION_TTL = timedelta(days=14)
MAX_CREDENTIAL = 500
CACHE_TTL = 5.0
CACHE_SIZE = 10_000
_cache: dict[bytes, tuple[float, Principal]] = {}


@dataclass(frozen=True, slots=True)
class IssuedSession:
    session: LoginSession
    user: User
    secret: str  # the cookie value; only its hash is stored


async def login(email: str, password: str) -> IssuedSession:
    email = (email or "").strip().lower()
    user = await User.get_or_none(email=email) if 0 < len(email) <= 320 else None
    ok = crypto.verify_password(user.password_hash if user else None, password or "")
    if user is None or not ok or not user.is_active:
        raise Unauthenticated("invalid email or password")
    secret = crypto.new_token("session")
    session = await LoginSession.create(
        user=user,
        token_hash=crypto.hash_token(secret),
        expires_at=datetime.now(UTC) + SESSION_TTL,
    )
    return IssuedSession(session, user, secret)


async def logout(secret: str) -> bool:
    """End the session with this cookie value; False if there was none."""
    if not secret or len(secret) > MAX_CREDENTIAL:
        return False
    forget_credentials()
    return await LoginSession.filter(token_hash=crypto.hash_token(secret)).delete() > 0


def token_from_authorization(value: str | None) -> str | None:
    """The token in an ``Authorization`` value (``Bearer``/``Token`` schemes), else None."""
    if not value or len(value) > MAX_CREDENTIAL:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() not in ("bearer", "token"):
        return None
    return token.strip() or None


@dataclass(frozen=True, slots=True)
class Presented:
    """What a request presented; ``present`` even if it turns out to be invalid."""

    token: str | None = None
    session: str | None = None

    @property
    def present(self) -> bool:
        return bool(self.token or self.session)


def credentials_from_headers(authorization: str | None, session_cookie: str | None) -> Presented:
    return Presented(
        token=token_from_authorization(authorization),
        session=(session_cookie or None) if not authorization else None,
    )


def credentials_from_params(params: Mapping[str, object] | None) -> Presented:
    """What a websocket ``connection_init`` payload."""
    if not isinstance(params, Mapping):
        return Presented()
    auth = params.get("authorization") or params.get("Authorization")
    if isinstance(auth, str):
        return Presented(token=token_from_authorization(auth))
    token = params.get("token")
    if isinstance(token, str) and 0 < len(token) <= MAX_CREDENTIAL:
        return Presented(token=token)
    return Presented()


async def authenticate(creds: Presented) -> Principal | None:
    """The principal behind the credentials, or None if they are missing or invalid."""
    if not creds.present:
        return None
    secret = creds.token or creds.session or ""
    key = hashlib.sha256(("t:" if creds.token else "s:").encode() + secret.encode()).digest()
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    if creds.token:
        principal = await principal_from_token(creds.token)
    else:
        principal = await principal_from_session(secret)
    if principal is None:
        _cache.pop(key, None)
        return None
    until = now + CACHE_TTL
    expires = principal.token.expires_at if principal.token is not None else None
    if expires is not None:
        until = min(until, now + (expires - datetime.now(UTC)).total_seconds())
    if len(_cache) >= CACHE_SIZE:
        _cache.clear()
    _cache[key] = (until, principal)
    return principal


def forget_credentials() -> None:
    """Drop every remembered lookup (after a revocation or a membership change)."""
    _cache.clear()


async def principal_from_params(params: Mapping[str, object] | None) -> Principal | None:
    """For websocket transports: the principal of a ``connection_init`` payload."""
    return await authenticate(credentials_from_params(params))
