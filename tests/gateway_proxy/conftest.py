"""Stand-ins for the IDE proxy tests: a develop server, a gateway app, raw clients.

Everything runs on real loopback sockets. ``running_develop()`` and
``running_gateway()`` are plain async context managers so the same scenario
can run on the test loop and on a uvloop loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from server.gateway.ide_proxy import (  # noqa: E402
    FrontServer,
    IdeRejection,
    IdeTarget,
    RequestHead,
    ide_ws_fallback,
    serve,
)

SECRET = "s3cret-token"
TOKEN = "Bearer good"


# ----------------------------------------------------------------- develop server


@dataclass
class Develop:
    """The develop-server stand-in: echoes, reports headers, records closes."""

    port: int
    opened: list[dict[str, Any]] = field(default_factory=list)
    closes: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)


DEV_KEY = web.AppKey("dev", Develop)


async def _develop_ws(request: web.Request) -> web.StreamResponse:
    dev = request.app[DEV_KEY]
    if request.headers.get("X-Kiln-Develop-Secret") != SECRET:
        return web.json_response({"error": "bad secret"}, status=403)
    ws = web.WebSocketResponse(protocols=("jsonrpc", "chat"), max_msg_size=0)
    await ws.prepare(request)
    seen = {
        "path": request.path_qs,
        "headers": [[k, v] for k, v in request.headers.items()],
        "compress": ws.compress,
        "protocol": ws.ws_protocol,
    }
    dev.opened.append(seen)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                text: str = msg.data
                if text == "headers":
                    await ws.send_str(json.dumps(seen))
                elif text.startswith("close:"):
                    _, code, reason = text.split(":", 2)
                    await ws.close(code=int(code), message=reason.encode())
                elif text == "die":
                    assert request.transport is not None
                    request.transport.abort()
                elif text.startswith("stream:"):  # stream:<count>:<size>
                    _, count, size = text.split(":")
                    for i in range(int(count)):
                        await ws.send_bytes(struct.pack(">I", i) + b"x" * int(size))
                else:
                    await ws.send_str(text)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
    finally:
        dev.closes.put_nowait(ws.close_code)
    return ws


@contextlib.asynccontextmanager
async def running_develop() -> AsyncIterator[Develop]:
    app = web.Application()
    app.router.add_get("/ws", _develop_ws)
    dev = Develop(port=0)
    app[DEV_KEY] = dev
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    dev.port = runner.addresses[0][1]
    try:
        yield dev
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------------ gateway


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Gateway:
    port: int
    server: FrontServer
    dev: Develop
    activity: list[tuple[float, int]] = field(default_factory=list)
    resolved: list[tuple[str, RequestHead]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def make_resolver(gw: Gateway, dead_port: int) -> Any:
    async def resolver(session_id: str, head: RequestHead) -> IdeTarget | IdeRejection:
        gw.resolved.append((session_id, head))
        if head.headers.get("Authorization") != TOKEN and "kiln_session=good" not in (
            head.headers.get("Cookie") or ""
        ):
            return IdeRejection(401, "authentication required")
        if session_id == "forbidden":
            return IdeRejection(403, "this IDE session belongs to someone else")
        if session_id == "notready":
            return IdeRejection(409, "the IDE session is still starting")
        if session_id == "boom":
            raise RuntimeError("resolver bug")
        if session_id == "slow":
            await asyncio.sleep(60)
        if session_id == "down":
            return IdeTarget("127.0.0.1", dead_port, SECRET, session_id)
        if session_id == "wrongsecret":
            return IdeTarget("127.0.0.1", gw.dev.port, "nope", session_id)
        if session_id.startswith("ok"):
            return IdeTarget(
                "127.0.0.1",
                gw.dev.port,
                SECRET,
                session_id,
                on_activity=lambda n: gw.activity.append((time.monotonic(), n)),
            )
        return IdeRejection(404, f"no IDE session {session_id}")

    return resolver


async def _hello(request: web.Request) -> web.Response:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return web.json_response({"hello": "world", "peer_port": peer[1] if peer else None})


async def _upload(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        digest.update(chunk)
        size += len(chunk)
    return web.json_response({"size": size, "sha256": digest.hexdigest()})


async def _graphql_ws(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(protocols=("graphql-transport-ws",))
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            data = json.loads(msg.data)
            if data.get("type") == "connection_init":
                await ws.send_json({"type": "connection_ack"})
            else:
                await ws.send_json({"type": "next", "id": data.get("id"), "payload": data})
    return ws


@contextlib.asynccontextmanager
async def running_gateway(dev: Develop, **options: Any) -> AsyncIterator[Gateway]:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/hello", _hello)
    app.router.add_post("/upload", _upload)
    app.router.add_get("/graphql", _graphql_ws)
    gw = Gateway(port=0, server=None, dev=dev)  # type: ignore[arg-type]
    resolver = make_resolver(gw, free_port())
    app.router.add_get("/ide/{session}/ws", ide_ws_fallback(resolver, activity_interval=0.2))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ssl_context = options.pop("ssl", None)
    server = await serve(runner, "127.0.0.1", 0, resolver, ssl=ssl_context, **options)
    gw.server = server
    gw.port = server.sockets[0].getsockname()[1]
    try:
        yield gw
    finally:
        server.close()
        await runner.cleanup()
        await server.wait_closed()


@pytest.fixture
async def dev() -> AsyncIterator[Develop]:
    async with running_develop() as d:
        yield d


@pytest.fixture
async def gateway(dev: Develop) -> AsyncIterator[Gateway]:
    async with running_gateway(dev, activity_interval=0.2, head_timeout=1.0) as gw:
        yield gw


# -------------------------------------------------------------------- raw clients


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def read_response(reader: asyncio.StreamReader) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return Response(status, headers, body)


def upgrade_request(
    path: str, *, port: int = 0, extra: str = "", auth: str | None = TOKEN
) -> bytes:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    text = "\r\n".join(lines) + "\r\n" + extra + "\r\n"
    return text.encode()


async def raw_exchange(port: int, data: bytes) -> Response:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(read_response(reader), 10)
    finally:
        writer.close()


def ws_frame(opcode: int, payload: bytes, *, mask: bool = True) -> bytes:
    """One complete websocket frame (FIN set), masked as a client sends it."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


async def read_ws_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack(">H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack(">Q", await reader.readexactly(8))
    assert not b1 & 0x80, "server frames are not masked"
    return b0 & 0x0F, await reader.readexactly(n)


def client_frame_size(n: int) -> int:
    return n + 2 + 4 + (2 if 126 <= n < 65536 else 8 if n >= 65536 else 0)


def server_frame_size(n: int) -> int:
    return n + 2 + (2 if 126 <= n < 65536 else 8 if n >= 65536 else 0)
