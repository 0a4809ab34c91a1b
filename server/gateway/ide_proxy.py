"""The gateway's IDE websocket proxy: a raw-byte relay in front of aiohttp.

Contract
========

``serve(runner, host, port, resolver)`` listens on ``host:port`` with a small
asyncio protocol (the *front*) in front of the aiohttp application of
``runner``. For every new connection the front reads the first request head:

* A request that is not ``GET /ide/<session id>/ws`` with ``Upgrade: websocket``
  (HTTP/1.1) is handed to aiohttp unchanged: the front creates aiohttp's own
  protocol from ``runner.server``, gives it the transport and every byte
  already read, and forwards every later callback (``data_received``,
  ``eof_received``, ``connection_lost``, ``pause_writing``, ``resume_writing``).
  aiohttp then owns the connection for its whole life (keep-alive, pipelining,
  bodies, its own websockets such as ``/graphql``). The front decides on the
  first bytes: anything that cannot start with ``GET /ide/`` is handed over at
  once, so only ``/ide/`` heads are subject to the limits below.
* An IDE upgrade is given to the *resolver* (``resolver(session_id, head)``).
  The resolver authenticates the user (``Authorization`` or ``Cookie`` in
  ``head.headers``), checks the session belongs to them and is ready, and
  returns an ``IdeTarget`` (where the develop server is and its secret) or an
  ``IdeRejection``. The resolver is trusted with the client's complete request
  head, credentials included, and is the only code that sees them; it must
  check ``Origin`` when it accepts a cookie (cross-site websocket hijacking).
  The proxy trusts the target it returns.
* On success the front opens a TCP connection to ``target.host:target.port``
  and writes a rewritten head: request target ``/ws`` (the client's path and
  query string are dropped: a query may carry credentials), ``Host`` set to the
  develop server, ``X-Kiln-Develop-Secret: <target.secret>`` added,
  ``X-Forwarded-For`` appended with the client's address, ``X-Forwarded-Proto``
  and ``X-Forwarded-Host`` set. Stripped: ``Cookie``, ``Authorization``,
  ``Proxy-Authorization``, any client-sent ``X-Kiln-Develop-Secret``, hop-by-hop
  headers (``Connection`` and the headers it names, ``Keep-Alive``,
  ``Proxy-Connection``, ``TE``, ``Trailer``), and ``permessage-deflate`` (and
  the older deflate extensions) from ``Sec-WebSocket-Extensions``, so
  compression is never negotiated (the header is dropped when nothing is
  left). Everything else, including ``Sec-WebSocket-Key``, ``-Version``,
  ``-Protocol`` and ``Origin``, is passed through byte for byte.
* The develop server's answer must be ``101``; its response head and every
  byte after it are relayed to the client unchanged. Any other status becomes
  a ``502`` for the client (the develop server's status line in the reason).
* After that the proxy copies bytes both ways and never parses, buffers for
  inspection, reorders, or drops them: bytes leave in the order they arrived,
  and closing a side flushes what was already queued for it first. The only
  bytes not delivered are those whose receiver is already gone.
  Backpressure: each transport has a write-buffer high-water mark
  (``high_water``, default 64 KiB); when the buffer towards one side passes
  it, the proxy stops reading from the other side until it drains, so memory
  per connection is bounded whatever the peers do.
* Closing: an EOF from one side is passed on as an EOF (``write_eof``) to the
  other (half-close), or as a close where the transport cannot half-close
  (TLS); once both directions have ended, both are closed. When either side's
  connection is lost, the other is closed after its queued bytes are flushed.
  If the develop server dies mid-session the client's TCP connection is closed
  WITHOUT a websocket close frame (browsers report code 1006): the relay does
  not track frame boundaries, and a close frame injected mid-frame would
  corrupt the stream. A develop server that closes properly sends its own
  close frame, which is relayed.

Errors before the upgrade are HTTP responses with a JSON body
``{"error": reason}`` and ``Connection: close``, after which the connection is
closed: the resolver's rejection (its status and reason); ``400`` for a
malformed head or an upgrade request with a body; ``431`` for a head over
``head_limit`` bytes (default 16 KiB) or over 100 header lines; ``502`` when
the develop server cannot be reached (refused, unresolvable, connect timeout),
closes during the handshake, or refuses the upgrade; ``504`` when the resolver
or the develop server's handshake takes too long; ``500`` when the resolver
raises. A connection that has not completed its ``/ide/`` head within
``head_timeout`` seconds (default 10; slowloris), or that sends nothing at all
for that long, is closed without a response. Once a connection is handed to
aiohttp, aiohttp's own limits and timeouts apply.

Activity: ``target.on_activity(n)`` is called with the number of bytes relayed
(both directions, after the client's request head) since the previous call,
at most once per ``activity_interval`` seconds per connection (default 30),
from one shared timer; the hot path only increments a counter. The last bytes
of a closed connection are reported at the next tick. Exceptions from the
callback are logged and ignored.

A request that arrives on a keep-alive connection already handed to aiohttp
never reaches the front; mount ``ide_ws_fallback(resolver)`` on
``/ide/{session}/ws`` so that aiohttp proxies it frame by frame (slower, same
rules; it sends a ``1011`` close frame to the client if the develop server
dies, since it knows the framing).

Works on the default asyncio loop and on uvloop (the caller installs it).
Shut down with ``server.close()`` (stops listening, closes relayed and
half-read connections), then ``await runner.cleanup()``, then
``await server.wait_closed()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from ssl import SSLContext
from typing import Any, Protocol
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "FrontServer",
    "IdeRejection",
    "IdeTarget",
    "RequestHead",
    "Resolver",
    "ide_ws_fallback",
    "serve",
]

log = logging.getLogger("kiln.gateway.ide_proxy")

DEFAULT_HEAD_LIMIT = 16 * 1024
DEFAULT_HEAD_TIMEOUT = 10.0
DEFAULT_RESOLVE_TIMEOUT = 15.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_ACTIVITY_INTERVAL = 30.0
DEFAULT_HIGH_WATER = 64 * 1024
MAX_HEADER_LINES = 100
SECRET_HEADER = "X-Kiln-Develop-Secret"


# --------------------------------------------------------------------------- API


@dataclass(frozen=True)
class RequestHead:
    """The client's request head, as the resolver sees it.

    ``path`` is the request target exactly as sent (path and query, not
    decoded); ``headers`` are all of the client's headers, credentials
    included; ``peer`` is the client's socket address (``None`` if unknown).
    """

    method: str
    path: str
    headers: CIMultiDictProxy[str]
    peer: tuple[Any, ...] | None


@dataclass(frozen=True)
class IdeTarget:
    """Where the session's develop server listens, and how to get in.

    ``on_activity`` is called with the bytes relayed since its previous call,
    at most once per ``activity_interval`` seconds (see the module contract).
    """

    host: str
    port: int
    secret: str
    session_id: str
    on_activity: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        if not self.host or not _HOST_RE.fullmatch(self.host):
            raise ValueError(f"invalid develop server host {self.host!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"invalid develop server port {self.port!r}")
        if not _SECRET_RE.fullmatch(self.secret):
            raise ValueError("the develop secret must be visible ASCII, without spaces")


@dataclass(frozen=True)
class IdeRejection:
    """Refuse the upgrade: an HTTP ``status`` (401, 403, 404, 409 not ready,
    502 ...) with JSON body ``{"error": reason}``."""

    status: int
    reason: str


Resolver = Callable[[str, RequestHead], Awaitable["IdeTarget | IdeRejection"]]
"""``resolver(session_id, head)``: session id from the path (percent-decoded)."""


# ------------------------------------------------------------------ head parsing

_PREFIX = b"GET /ide/"
_HEAD_END = b"\r\n\r\n"
_TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_IDE_PATH_RE = re.compile(r"/ide/([^/?#]+)/ws(?:\?[^#]*)?")
_HOST_RE = re.compile(r"[A-Za-z0-9.\-_:%]+")  # a name, IPv4 or bare IPv6
_SECRET_RE = re.compile(r"[\x21-\x7e]+")
_BAD_VALUE_RE = re.compile(rb"[\x00\r\n]")
_DEFLATE_EXTENSIONS = frozenset(
    {"permessage-deflate", "x-webkit-deflate-frame", "deflate-frame", "perframe-deflate"}
)
# Headers never passed through as sent (some are re-added, rewritten).
_DROPPED = frozenset(
    {
        "host",
        "cookie",
        "authorization",
        "proxy-authorization",
        SECRET_HEADER.lower(),
        "connection",
        "upgrade",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "sec-websocket-extensions",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    }
)


class _HeadError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class _Upgrade:
    """A parsed IDE upgrade request, kept only until the relay starts."""

    session_id: str
    head: RequestHead
    passed: list[bytes]  # raw header lines passed through unchanged
    extensions: str  # Sec-WebSocket-Extensions without deflate ("" = none)
    host: str
    forwarded_for: str


def _tokens(values: Iterable[str]) -> set[str]:
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def _strip_deflate(values: Iterable[str]) -> str:
    keep = []
    for value in values:
        for ext in value.split(","):
            name = ext.split(";", 1)[0].strip().lower()
            if name and name not in _DEFLATE_EXTENSIONS:
                keep.append(ext.strip())
    return ", ".join(keep)


def _parse_head(head: bytes, peer: tuple[Any, ...] | None) -> _Upgrade | None:
    """Parse a request head (ending in CRLF CRLF). ``None``: not an IDE upgrade."""
    lines = head[:-4].split(b"\r\n")
    if len(lines) - 1 > MAX_HEADER_LINES:
        raise _HeadError(431, "too many header lines")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or _BAD_VALUE_RE.search(lines[0]):
        raise _HeadError(400, "malformed request line")
    method, target, version = parts
    if version != b"HTTP/1.1":
        return None
    try:
        target_s = target.decode("ascii")
    except UnicodeDecodeError:
        return None
    match = _IDE_PATH_RE.fullmatch(target_s)
    if match is None:
        return None
    raw_headers: list[tuple[bytes, str, str]] = []
    for raw in lines[1:]:
        if not raw or raw[0] in b" \t":
            raise _HeadError(400, "obsolete header line folding")
        colon = raw.find(b":")
        if colon <= 0 or not _TOKEN_RE.fullmatch(raw, 0, colon):
            raise _HeadError(400, "malformed header line")
        if _BAD_VALUE_RE.search(raw):
            raise _HeadError(400, "invalid character in header")
        name = raw[:colon].decode("ascii")
        value = raw[colon + 1 :].strip(b" \t").decode("utf-8", "surrogateescape")
        raw_headers.append((raw, name, value))
    headers: CIMultiDict[str] = CIMultiDict((n, v) for _, n, v in raw_headers)
    if "websocket" not in _tokens(headers.getall("Upgrade", ())) or "upgrade" not in _tokens(
        headers.getall("Connection", ())
    ):
        return None
    if "Content-Length" in headers or "Transfer-Encoding" in headers:
        raise _HeadError(400, "a websocket upgrade request must not have a body")
    hosts = headers.getall("Host", ())
    if len(hosts) != 1:
        raise _HeadError(400, "exactly one Host header is required")
    dropped = _DROPPED | _tokens(headers.getall("Connection", ()))
    passed = [raw for raw, name, _ in raw_headers if name.lower() not in dropped]
    client_ip = str(peer[0]) if peer else "unknown"
    prior = ", ".join(headers.getall("X-Forwarded-For", ()))
    return _Upgrade(
        session_id=unquote(match.group(1)),
        head=RequestHead(
            method=method.decode("ascii", "replace"),
            path=target_s,
            headers=CIMultiDictProxy(headers),
            peer=peer,
        ),
        passed=passed,
        extensions=_strip_deflate(headers.getall("Sec-WebSocket-Extensions", ())),
        host=hosts[0],
        forwarded_for=f"{prior}, {client_ip}" if prior else client_ip,
    )


def _upstream_head(up: _Upgrade, target: IdeTarget, tls: bool) -> bytes:
    host = f"[{target.host}]" if ":" in target.host else target.host
    out = [b"GET /ws HTTP/1.1", f"Host: {host}:{target.port}".encode("ascii")]
    out.extend(up.passed)
    out.append(b"Connection: Upgrade")
    out.append(b"Upgrade: websocket")
    if up.extensions:
        out.append(f"Sec-WebSocket-Extensions: {up.extensions}".encode("utf-8", "surrogateescape"))
    out.append(f"X-Forwarded-For: {up.forwarded_for}".encode("utf-8", "surrogateescape"))
    out.append(b"X-Forwarded-Proto: https" if tls else b"X-Forwarded-Proto: http")
    out.append(f"X-Forwarded-Host: {up.host}".encode("utf-8", "surrogateescape"))
    out.append(f"{SECRET_HEADER}: {target.secret}".encode("ascii"))
    out.append(b"\r\n")
    return b"\r\n".join(out)


def _error_response(status: int, reason: str) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body = json.dumps({"error": reason}).encode()
    return (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii") + body


def _rejection_status(status: int) -> int:
    return status if 400 <= status <= 599 else 500


# ---------------------------------------------------------------------- activity


class _Metered(Protocol):
    def _take_activity(self) -> tuple[Callable[[int], None] | None, int, bool]:
        """(callback, bytes since last call, finished)."""
        ...


class _ActivityTicker:
    """One timer for many connections: reports activity once per interval."""

    __slots__ = ("_interval", "_items", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self._interval = interval
        self._items: set[_Metered] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, item: _Metered) -> None:
        self._items.add(item)
        if self._timer is None:
            self._timer = self._loop.call_later(self._interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        for item in list(self._items):
            callback, count, finished = item._take_activity()
            if finished:
                self._items.discard(item)
            if count and callback is not None:
                try:
                    callback(count)
                except Exception:
                    log.exception("IDE activity callback failed")
        if self._items:
            self._timer = self._loop.call_later(self._interval, self._tick)


# ------------------------------------------------------------------- raw relay

_HEAD, _OPENING, _RELAY, _HANDED, _CLOSED = range(5)
_FLOW_ERRORS = (AttributeError, NotImplementedError, RuntimeError)


def _pause(transport: asyncio.Transport | None) -> None:
    if transport is not None:
        try:
            transport.pause_reading()
        except _FLOW_ERRORS:
            pass


def _resume(transport: asyncio.Transport | None) -> None:
    if transport is not None:
        try:
            transport.resume_reading()
        except _FLOW_ERRORS:
            pass


class _Hub:
    """Per-listener state shared by its fronts."""

    __slots__ = (
        "connect_timeout",
        "factory",
        "head_limit",
        "head_timeout",
        "high_water",
        "loop",
        "pending",
        "relays",
        "resolve_timeout",
        "resolver",
        "ticker",
        "tls",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], asyncio.Protocol],
        resolver: Resolver,
        *,
        tls: bool,
        head_limit: int,
        head_timeout: float,
        resolve_timeout: float,
        connect_timeout: float,
        activity_interval: float,
        high_water: int,
    ) -> None:
        self.loop = loop
        self.factory = factory
        self.resolver = resolver
        self.tls = tls
        self.head_limit = head_limit
        self.head_timeout = head_timeout
        self.resolve_timeout = resolve_timeout
        self.connect_timeout = connect_timeout
        self.high_water = high_water
        self.ticker = _ActivityTicker(loop, activity_interval)
        self.pending: set[_Front] = set()
        self.relays: set[_Front] = set()

    def close_all(self) -> None:
        for front in list(self.pending):
            front.close()
        for front in list(self.relays):
            front.close()


class _Upstream(asyncio.Protocol):
    """The develop-server side of one relayed connection."""

    __slots__ = ("_buf", "_front", "client", "count", "transport")

    def __init__(self, front: _Front) -> None:
        self._front: _Front | None = front
        self.transport: asyncio.Transport | None = None
        self.client: asyncio.Transport | None = None  # set once relaying
        self.count = 0
        self._buf: bytearray | None = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is not None:  # hot path
            self.count += len(data)
            client.write(data)
            return
        front, buf = self._front, self._buf
        if front is None or buf is None:
            return
        start = max(0, len(buf) - 3)
        buf += data
        end = buf.find(_HEAD_END, start)
        if end >= 0:
            self._buf = None
            front._upstream_head(buf, end + 4)
        elif len(buf) > front._hub.head_limit:
            front._upstream_failed(502, "the develop server sent an oversized handshake response")

    def eof_received(self) -> bool | None:
        front = self._front
        if front is None:
            return None
        if self.client is not None:
            return front._upstream_eof()
        front._upstream_failed(502, "the develop server closed the connection during the handshake")
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        front = self._front
        self._front = None
        if front is not None:
            front._upstream_lost()

    def pause_writing(self) -> None:
        _pause(self.client)

    def resume_writing(self) -> None:
        _resume(self.client)


class _Front(asyncio.Protocol):
    """The client side: reads the first head, then relays or hands to aiohttp."""

    __slots__ = (
        "_buf",
        "_client_eof",
        "_handler",
        "_hub",
        "_state",
        "_target",
        "_task",
        "_timer",
        "_transport",
        "_up",
        "_up_eof",
        "_upstream",
        "count",
    )

    def __init__(self, hub: _Hub) -> None:
        self._hub = hub
        self._state = _HEAD
        self._transport: asyncio.Transport | None = None
        self._up: asyncio.Transport | None = None  # upstream transport, set once relaying
        self._upstream: _Upstream | None = None
        self._handler: asyncio.Protocol | None = None  # aiohttp's, once handed over
        self._buf: bytearray | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._target: IdeTarget | None = None
        self._client_eof = False
        self._up_eof = False
        self.count = 0

    # -- asyncio callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        hub = self._hub
        hub.pending.add(self)
        self._timer = hub.loop.call_later(hub.head_timeout, self._head_timeout)

    def data_received(self, data: bytes) -> None:
        up = self._up
        if up is not None:  # hot path: relaying
            self.count += len(data)
            up.write(data)
            return
        handler = self._handler
        if handler is not None:  # aiohttp's connection
            handler.data_received(data)
            return
        self._head_received(data)

    def eof_received(self) -> bool | None:
        if self._handler is not None:
            return self._handler.eof_received()
        if self._state != _RELAY:
            self.close()
            return None
        self._client_eof = True
        up = self._up
        if up is not None and up.can_write_eof():
            up.write_eof()
        elif up is not None:
            up.close()
        if self._up_eof:
            self.close()
        # A TLS transport cannot stay half-open: it closes itself on EOF, and
        # connection_lost then closes the develop server's side.
        return None if self._hub.tls else True

    def connection_lost(self, exc: BaseException | None) -> None:
        handler = self._handler
        if handler is not None:
            self._handler = None
            handler.connection_lost(exc)
            return
        self._finish()

    def pause_writing(self) -> None:
        if self._up is not None:
            _pause(self._up)
        elif self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._up is not None:
            _resume(self._up)
        elif self._handler is not None:
            self._handler.resume_writing()

    # -- head ----------------------------------------------------------------------

    def _head_received(self, data: bytes) -> None:
        if self._state != _HEAD:
            if self._state == _OPENING and self._buf is not None:
                self._buf += data  # rare: the client is paused while opening
                if len(self._buf) > 4 * self._hub.head_limit:
                    self.close()
            return
        buf = self._buf
        if buf is None:
            n = min(len(data), len(_PREFIX))
            if data[:n] != _PREFIX[:n]:
                self._hand_off(data)  # the common case: not an IDE request
                return
            buf = self._buf = bytearray(data)
            start = 0
        else:
            start = max(0, len(buf) - 3)
            buf += data
            n = min(len(buf), len(_PREFIX))
            if buf[:n] != _PREFIX[:n]:
                self._hand_off(bytes(buf))
                return
        end = buf.find(_HEAD_END, start)
        limit = self._hub.head_limit
        if end < 0:
            if len(buf) > limit:
                self._reject(431, f"request head larger than {limit} bytes")
            return
        end += 4
        if end > limit:
            self._reject(431, f"request head larger than {limit} bytes")
            return
        transport = self._transport
        assert transport is not None
        try:
            upgrade = _parse_head(bytes(buf[:end]), transport.get_extra_info("peername"))
        except _HeadError as err:
            self._reject(err.status, err.reason)
            return
        if upgrade is None:
            self._hand_off(bytes(buf))
            return
        del buf[:end]  # what follows the head goes upstream after it
        self._state = _OPENING
        self._cancel_timer()
        _pause(transport)
        self._task = self._hub.loop.create_task(self._open(upgrade))

    def _hand_off(self, data: bytes) -> None:
        self._cancel_timer()
        self._buf = None
        self._state = _HANDED
        self._hub.pending.discard(self)
        handler = self._hub.factory()
        self._handler = handler
        handler.connection_made(self._transport)  # type: ignore[arg-type]
        if data:
            handler.data_received(data)

    def _head_timeout(self) -> None:
        self._timer = None
        if self._state == _HEAD:
            log.debug("closing a connection that sent no complete head in time")
            self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- opening -------------------------------------------------------------------

    async def _open(self, upgrade: _Upgrade) -> None:
        hub = self._hub
        sid = upgrade.session_id
        try:
            result = await asyncio.wait_for(hub.resolver(sid, upgrade.head), hub.resolve_timeout)
        except TimeoutError:
            self._reject(504, "timed out looking up the IDE session")
            return
        except Exception:
            log.exception("IDE resolver failed for session %r", sid)
            self._reject(500, "internal error while looking up the IDE session")
            return
        if isinstance(result, IdeRejection):
            self._reject(_rejection_status(result.status), result.reason)
            return
        if not isinstance(result, IdeTarget):
            log.error("IDE resolver returned %r", result)
            self._reject(500, "internal error while looking up the IDE session")
            return
        if self._state != _OPENING:
            return
        upstream = _Upstream(self)
        self._upstream = upstream
        where = f"{result.host}:{result.port}"
        try:
            await asyncio.wait_for(
                hub.loop.create_connection(lambda: upstream, result.host, result.port),
                hub.connect_timeout,
            )
        except TimeoutError:
            self._reject(502, f"develop server of session {sid} did not answer at {where}")
            return
        except OSError as err:
            reason = os.strerror(err.errno) if err.errno else str(err) or type(err).__name__
            log.warning("IDE session %r: develop server unreachable at %s: %s", sid, where, reason)
            self._reject(
                502, f"develop server of session {sid} is unreachable at {where}: {reason}"
            )
            return
        transport = upstream.transport
        if self._state != _OPENING or transport is None:
            if transport is not None:
                transport.close()
            return
        self._target = result
        self._task = None
        transport.write(_upstream_head(upgrade, result, hub.tls))
        self._forward_buffered()
        self._timer = hub.loop.call_later(hub.connect_timeout, self._handshake_timeout)

    def _forward_buffered(self) -> None:
        """Send what the client sent after its head (normally nothing) upstream."""
        buf = self._buf
        upstream = self._upstream
        if buf and upstream is not None and upstream.transport is not None:
            self.count += len(buf)
            upstream.transport.write(bytes(buf))
            buf.clear()

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self._state == _OPENING:
            self._reject(504, "the develop server did not answer the websocket handshake in time")

    def _upstream_head(self, buf: bytearray, end: int) -> None:
        if self._state != _OPENING:
            return
        status_line = bytes(buf[: buf.find(b"\r\n")])
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or parts[1] != b"101" or not parts[0].startswith(b"HTTP/1."):
            text = status_line.decode("latin-1")[:200]
            self._reject(502, f"the develop server refused the websocket upgrade: {text}")
            return
        self._cancel_timer()
        upstream = self._upstream
        client = self._transport
        assert upstream is not None and client is not None and upstream.transport is not None
        hub = self._hub
        self._state = _RELAY
        hub.pending.discard(self)
        hub.relays.add(self)
        client.set_write_buffer_limits(high=hub.high_water)
        upstream.transport.set_write_buffer_limits(high=hub.high_water)
        self._forward_buffered()
        self._buf = None
        upstream.count = len(buf) - end
        upstream.client = client
        self._up = upstream.transport
        client.write(bytes(buf))
        if self._target is not None and self._target.on_activity is not None:
            hub.ticker.add(self)
        _resume(client)

    def _upstream_failed(self, status: int, reason: str) -> None:
        if self._state == _OPENING:
            self._reject(status, reason)

    def _upstream_eof(self) -> bool:
        self._up_eof = True
        client = self._transport
        if client is not None and client.can_write_eof():
            client.write_eof()
        elif client is not None:
            client.close()
        if self._client_eof:
            self.close()
        return True

    def _upstream_lost(self) -> None:
        if self._state == _OPENING:
            self._reject(502, "the develop server closed the connection during the handshake")
            return
        self._up = None  # whatever the client still sends has nowhere to go
        if self._transport is not None:
            self._transport.close()

    # -- ending --------------------------------------------------------------------

    def _reject(self, status: int, reason: str) -> None:
        transport = self._transport
        if self._state in (_CLOSED, _HANDED, _RELAY) or transport is None:
            return
        log.debug("IDE upgrade rejected: %s %s", status, reason)
        self._state = _CLOSED
        if not transport.is_closing():
            transport.write(_error_response(status, reason))
        self.close()

    def close(self) -> None:
        """Close both sides (queued bytes are flushed first)."""
        if self._handler is not None:
            return
        if self._transport is not None:
            self._transport.close()
        upstream = self._upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.close()
        if self._state != _RELAY:
            self._finish()

    def _finish(self) -> None:
        self._state = _CLOSED
        self._cancel_timer()
        task = self._task
        if task is not None:
            self._task = None
            if task is not asyncio.current_task():
                task.cancel()
        upstream = self._upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.close()
        self._buf = None
        self._up = None
        hub = self._hub
        hub.pending.discard(self)
        hub.relays.discard(self)

    def _take_activity(self) -> tuple[Callable[[int], None] | None, int, bool]:
        upstream = self._upstream
        count = self.count
        self.count = 0
        if upstream is not None:
            count += upstream.count
            upstream.count = 0
        target = self._target
        return (target.on_activity if target else None), count, self._state == _CLOSED


class FrontServer(asyncio.AbstractServer):
    """The listening front: an ``asyncio.AbstractServer`` whose ``close()``
    also closes the relayed and half-read connections it owns (connections
    handed to aiohttp are closed by ``runner.cleanup()``)."""

    def __init__(self, server: asyncio.AbstractServer, hub: _Hub) -> None:
        self._server = server
        self._hub = hub

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(getattr(self._server, "sockets", ()) or ())

    @property
    def relay_count(self) -> int:
        """IDE connections currently relayed."""
        return len(self._hub.relays)

    def close(self) -> None:
        self._server.close()
        self._hub.close_all()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._server.get_loop()

    def is_serving(self) -> bool:
        return self._server.is_serving()

    async def start_serving(self) -> None:
        await self._server.start_serving()

    async def serve_forever(self) -> None:
        await self._server.serve_forever()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()


async def serve(
    runner: web.AppRunner,
    host: str | None,
    port: int,
    resolver: Resolver,
    *,
    ssl: SSLContext | None = None,
    backlog: int = 1024,
    reuse_address: bool | None = None,
    reuse_port: bool | None = None,
    head_limit: int = DEFAULT_HEAD_LIMIT,
    head_timeout: float = DEFAULT_HEAD_TIMEOUT,
    resolve_timeout: float = DEFAULT_RESOLVE_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    activity_interval: float = DEFAULT_ACTIVITY_INTERVAL,
    high_water: int = DEFAULT_HIGH_WATER,
) -> FrontServer:
    """Listen on ``host:port`` with the IDE front before ``runner``'s application.

    ``runner`` must be set up (``await runner.setup()``); do not also start a
    ``TCPSite`` on the same port. ``port=0`` picks a free port (see
    ``server.sockets``). ``connect_timeout`` bounds both the TCP connect to the
    develop server and its handshake answer.
    """
    factory = runner.server
    if factory is None:
        raise RuntimeError("call `await runner.setup()` before serve()")
    timeouts = (head_timeout, resolve_timeout, connect_timeout, activity_interval)
    if min(timeouts) <= 0 or head_limit < 64 or high_water < 1:
        raise ValueError("timeouts and intervals must be positive, head_limit at least 64")
    loop = asyncio.get_running_loop()
    hub = _Hub(
        loop,
        factory,
        resolver,
        tls=ssl is not None,
        head_limit=head_limit,
        head_timeout=head_timeout,
        resolve_timeout=resolve_timeout,
        connect_timeout=connect_timeout,
        activity_interval=activity_interval,
        high_water=high_water,
    )
    server = await loop.create_server(
        lambda: _Front(hub),
        host,
        port,
        ssl=ssl,
        backlog=backlog,
        reuse_address=reuse_address,
        reuse_port=reuse_port,
    )
    return FrontServer(server, hub)


# ------------------------------------------------------------- aiohttp fallback

_FALLBACK_DROPPED = _DROPPED | frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "content-length",
        "transfer-encoding",
    }
)


class _FrameRelay:
    """Activity bookkeeping of one fallback (frame-by-frame) relay."""

    __slots__ = ("count", "finished", "target")

    def __init__(self, target: IdeTarget) -> None:
        self.target = target
        self.count = 0
        self.finished = False

    def _take_activity(self) -> tuple[Callable[[int], None] | None, int, bool]:
        count = self.count
        self.count = 0
        return self.target.on_activity, count, self.finished


def _json_error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers={"Connection": "close"})


async def _pump(
    src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    relay: _FrameRelay,
    lost_reason: str,
) -> None:
    """Copy messages from ``src`` to ``dst`` until ``src`` closes."""
    WS = aiohttp.WSMsgType
    while True:
        msg = await src.receive()
        kind = msg.type
        if kind is WS.TEXT:
            relay.count += len(msg.data)
            await dst.send_str(msg.data)
        elif kind is WS.BINARY:
            relay.count += len(msg.data)
            await dst.send_bytes(msg.data)
        elif kind is WS.PING:
            await dst.ping(msg.data)
        elif kind is WS.PONG:
            await dst.pong(msg.data)
        elif kind is WS.CLOSE:  # pass the close on, then answer src with dst's reply
            code = msg.data if isinstance(msg.data, int) else 1000
            reason = (msg.extra or "").encode()
            await dst.close(code=code, message=reason)
            await src.close(code=dst.close_code or code, message=reason)
            return
        elif kind is WS.CLOSING:  # the other pump is closing src
            return
        else:  # CLOSED, ERROR: src went away without a close handshake
            if not dst.closed:
                await dst.close(code=1011, message=lost_reason.encode())
            return


def ide_ws_fallback(
    resolver: Resolver,
    *,
    activity_interval: float = DEFAULT_ACTIVITY_INTERVAL,
    resolve_timeout: float = DEFAULT_RESOLVE_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    max_msg_size: int = 64 * 1024 * 1024,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler for ``/ide/{session}/ws`` that proxies frame by frame.

    For IDE upgrades that reach aiohttp (a keep-alive connection it already
    owns). Same resolver, rewriting and rejections as the raw relay; messages
    larger than ``max_msg_size`` close the connection (1009). Activity counts
    message payload bytes. If either side goes away without a close frame,
    the other gets close code 1011.
    """
    ticker: list[_ActivityTicker] = []

    def _ticker() -> _ActivityTicker:
        loop = asyncio.get_running_loop()
        if not ticker or ticker[0]._loop is not loop:
            ticker[:] = [_ActivityTicker(loop, activity_interval)]
        return ticker[0]

    async def handler(request: web.Request) -> web.StreamResponse:
        session_id = request.match_info.get("session", "")
        probe = web.WebSocketResponse()
        if not probe.can_prepare(request).ok:
            return _json_error(400, "expected a websocket upgrade")
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        head = RequestHead(request.method, request.raw_path, request.headers, peer)
        try:
            result = await asyncio.wait_for(resolver(session_id, head), resolve_timeout)
        except TimeoutError:
            return _json_error(504, "timed out looking up the IDE session")
        except Exception:
            log.exception("IDE resolver failed for session %r", session_id)
            return _json_error(500, "internal error while looking up the IDE session")
        if isinstance(result, IdeRejection):
            return _json_error(_rejection_status(result.status), result.reason)
        if not isinstance(result, IdeTarget):
            return _json_error(500, "internal error while looking up the IDE session")
        target = result
        dropped = _FALLBACK_DROPPED | _tokens(request.headers.getall("Connection", ()))
        headers: CIMultiDict[str] = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in dropped
        )
        prior = ", ".join(request.headers.getall("X-Forwarded-For", ()))
        client_ip = str(peer[0]) if peer else "unknown"
        headers["X-Forwarded-For"] = f"{prior}, {client_ip}" if prior else client_ip
        headers["X-Forwarded-Proto"] = "https" if request.secure else "http"
        headers["X-Forwarded-Host"] = request.headers.get("Host", "")
        headers[SECRET_HEADER] = target.secret
        protocols = sorted(_tokens(request.headers.getall("Sec-WebSocket-Protocol", ())))
        host = f"[{target.host}]" if ":" in target.host else target.host
        url = f"http://{host}:{target.port}/ws"
        where = f"{target.host}:{target.port}"
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        ) as client:
            try:
                upstream = await asyncio.wait_for(
                    client.ws_connect(
                        url,
                        headers=headers,
                        protocols=protocols,
                        compress=0,
                        autoclose=False,
                        autoping=False,
                        max_msg_size=max_msg_size,
                    ),
                    connect_timeout,
                )
            except aiohttp.WSServerHandshakeError as err:
                return _json_error(
                    502, f"the develop server refused the websocket upgrade: HTTP {err.status}"
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as err:
                reason = str(err) or type(err).__name__
                return _json_error(
                    502,
                    f"develop server of session {session_id} is unreachable at {where}: {reason}",
                )
            ws = web.WebSocketResponse(
                protocols=[upstream.protocol] if upstream.protocol else [],
                compress=False,
                autoclose=False,
                autoping=False,
                max_msg_size=max_msg_size,
            )
            relay = _FrameRelay(target)
            try:
                await ws.prepare(request)
                if target.on_activity is not None:
                    _ticker().add(relay)
                tasks = [
                    asyncio.ensure_future(_pump(ws, upstream, relay, "client connection lost")),
                    asyncio.ensure_future(
                        _pump(upstream, ws, relay, "develop server connection lost")
                    ),
                ]
                try:
                    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    # The other pump ends when its source sees the close.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.gather(*pending), 5.0)
                finally:
                    for task in tasks:
                        task.cancel()
                    for task in tasks:
                        with contextlib.suppress(BaseException):
                            await task
            finally:
                relay.finished = True
                if not upstream.closed:
                    await upstream.close()
                if not ws.closed:
                    await ws.close(code=1011, message=b"proxy closed")
            return ws

    return handler
