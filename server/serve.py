"""Running Kiln's long-lived processes: ``kiln up`` (everything in one) and ``kiln gateway``.

Order on start: bind the port (so a port in use fails before anything is
created), open the platform (embedded PostgreSQL, migrations), build the
app, start background parts, then print the ready line. On SIGINT/SIGTERM
the same in reverse, and the embedded PostgreSQL is released last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web

from ide_broker.broker import Broker
from server.config import Settings
from server.events import EventListener
from server.gateway.app import build_app
from server.gateway.ide import make_resolver
from server.gateway.ide_proxy import serve as serve_front
from server.heap import settle as settle_heap
from server.platform import Platform

log = logging.getLogger("kiln.serve")

# Background parts started beside the gateway: (name, start(platform) -> stop coroutine).
Part = Callable[[Platform], Awaitable[Callable[[], Awaitable[None]]]]


async def runs_part(platform: Platform) -> Callable[[], Awaitable[None]]:
    """Run execution (launcher, dispatcher, monitor); see :mod:`server.runs.engine`."""
    from server.runs.engine import start_engine

    return await start_engine(platform)


# started after the caller's parts, so the scheduler's shared LISTEN connection exists
engine_parts: list[tuple[str, Part]] = [("runs", runs_part)]


class PortInUse(Exception):
    pass


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # several gateway processes on one port (server.gateway_workers)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    return ctx


async def run_server(
    settings: Settings,
    *,
    demo: bool = False,
    parts: list[tuple[str, Part]] | None = None,
    with_runs: bool = True,
    reuse_port: bool = False,
) -> None:
    sock = bind_socket(settings.host, settings.port, reuse_port=reuse_port)
    port = sock.getsockname()[1]
    settings = settings.with_overrides(port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    platform = await Platform.open(settings)
    stoppers: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    runner: web.AppRunner | None = None
    front = None
    try:
        # the process's one LISTEN connection, shared by hub, dispatcher, scheduler, webhooks
        events = EventListener(platform.db)
        await events.start()
        platform.services["events"] = events
        stoppers.append(("events", events.stop))
        if demo:
            from server.demo import ensure_demo

            await ensure_demo(platform.settings)
        broker = Broker(platform)
        platform.services["ide_broker"] = broker
        await broker.reattach()
        stoppers.append(("ide broker", broker.close))
        app = build_app(platform)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        # the IDE front reads each connection's first request head: IDE websocket
        # upgrades are relayed as raw bytes, everything else goes to aiohttp
        sock.close()
        front = await serve_front(runner, settings.host, port, make_resolver(broker),
                                  ssl=ssl_context(settings), reuse_address=True,
                                  reuse_port=reuse_port or None)
        for name, start in [*(parts or []), *(engine_parts if with_runs else [])]:
            stoppers.append((name, await start(platform)))
            log.info("started %s", name)
        settle_heap()
        scheme = "https" if settings.tls_cert else "http"
        print(f"Kiln is ready at {scheme}://{settings.host}:{port}", flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        for name, stopper in reversed(stoppers):
            try:
                await stopper()
            except Exception:
                log.exception("stopping %s failed", name)
        if front is not None:
            front.close()
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        if front is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(front.wait_closed(), 5)
        sock.close()
        await platform.close()
