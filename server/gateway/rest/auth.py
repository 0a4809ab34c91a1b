"""Who is calling the REST API, in which account, and whether they are over their rate.

``Authorization: Token <t>`` or ``Bearer <t>`` with a Kiln API token (no
cookies: programs call this API, and cookie auth would need CSRF defences).
The account in the path must be the token's: another account's objects are
404, exactly like missing ones. Roles are checked by the services.

Rate limit: a token bucket per token and per process, ``rate_limit_per_minute``
(default 5,000) requests per minute with bursts up to that number. Several
gateway processes each allow the full rate; the limit protects a process
from one runaway client, it is not a billing meter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from functools import wraps

from aiohttp import web

from server.gateway.app import PLATFORM
from server.gateway.rest.envelope import RestError
from server.services.actor import Actor, Principal
from server.services.auth import authenticate, credentials_from_headers
from server.services.errors import NotFound

MAX_BUCKETS = 100_000


class RateLimiter:
    """Token buckets keyed by token id."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[int, tuple[float, float]] = {}

    def take(self, key: int, now: float | None = None) -> tuple[bool, int, float]:
        """(allowed, remaining, seconds until the next request is allowed)."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False, 0, (1.0 - tokens) / self.rate
        if len(self._buckets) >= MAX_BUCKETS and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = (tokens - 1.0, now)
        return True, int(tokens - 1.0), 0.0

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled (they would start full anyway)."""
        full = [k for k, (t, last) in self._buckets.items()
                if t + (now - last) * self.rate >= self.capacity]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()


LIMITER = web.AppKey("rest_rate_limiter", RateLimiter)


def account_pk(request: web.Request) -> int:
    raw = request.match_info.get("account_id", "")
    if not raw.isdigit() or len(raw) > 18 or int(raw) == 0:
        raise NotFound("account not found")
    return int(raw)


async def principal(request: web.Request) -> Principal:
    """The caller, or 401; counts the request against the token's rate."""
    presented = credentials_from_headers(request.headers.get("Authorization"), None)
    if presented.token is None:
        raise RestError(
            401,
            "authentication required: send 'Authorization: Token <api token>'",
            headers={"WWW-Authenticate": 'Token realm="kiln"'},
        )
    found = await authenticate(presented)
    if found is None or found.token is None:
        raise RestError(401, "invalid token", headers={"WWW-Authenticate": 'Token realm="kiln"'})
    limiter = request.app[LIMITER]
    allowed, _remaining, wait = limiter.take(found.token.id)
    if not allowed:
        raise RestError(
            429,
            f"rate limit of {int(limiter.capacity)} requests per minute exceeded; "
            f"retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return found


def endpoint(
    fn: Callable[[web.Request, Actor], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler under ``/accounts/{account_id}/``: gets the caller's actor in that account."""

    @wraps(fn)
    async def handler(request: web.Request) -> web.StreamResponse:
        who = await principal(request)
        actor = who.actor(account_pk(request))
        return await fn(request, actor)

    return handler


def add_limiter(app: web.Application) -> None:
    app[LIMITER] = RateLimiter(app[PLATFORM].settings.rate_limit_per_minute)
