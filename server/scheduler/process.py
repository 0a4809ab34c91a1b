"""``kiln scheduler`` as its own process, and the scheduler part of ``kiln up``.

This module composes (it may import the IDE broker for culling); the
scheduler's own logic stays in :mod:`server.scheduler.daemon` and below.

The standalone process also serves ``/healthz``, ``/readyz`` and ``/metrics``
on ``--port`` (default 8581) for probes and Prometheus.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from server import clock as clock_mod
from server import metrics
from server.config import Settings
from server.events import EventListener
from server.platform import Platform
from server.scheduler.daemon import Scheduler
from server.serve import bind_socket

log = logging.getLogger("kiln.scheduler")

# extra background work that other areas contribute: (name, interval, factory(platform) -> fn)
EXTRA_TASKS: list[tuple[str, float, Callable[[Platform], Callable[[], Awaitable[object]]]]] = []


def _interval(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def build_scheduler(platform: Platform, events: EventListener) -> Scheduler:
    sched = Scheduler(
        platform,
        events,
        clock=clock_mod.from_env(),
        cron_interval=_interval("KILN_SCHEDULER_CRON_INTERVAL", 10),
        cleanup_interval=_interval("KILN_SCHEDULER_CLEANUP_INTERVAL", 300),
        leader_retry=_interval("KILN_SCHEDULER_LEADER_RETRY", 5),
    )
    for name, interval, factory in EXTRA_TASKS:
        sched.add_task(name, interval, factory(platform))
    from server.webhooks.tasks import add_webhook_tasks

    add_webhook_tasks(sched)
    sched.add_task(
        "ide-cull", _interval("KILN_SCHEDULER_CULL_INTERVAL", 60), _culler(platform, sched)
    )
    sched.add_task(
        "log-archive",
        _interval("KILN_SCHEDULER_ARCHIVE_INTERVAL", 60),
        _log_archiver(platform, sched),
    )
    return sched


def _log_archiver(platform: Platform, sched: Scheduler) -> Callable[[], Awaitable[object]]:
    """Move logs of runs finished KILN_LOG_ARCHIVE_AFTER ago to the object store (leader only)."""
    from server.logs.archive import archive_pass

    async def archive() -> object:
        if not sched.leadership.is_leader:
            return None
        return await archive_pass(
            platform.db, platform.store, sched.clock.now(), platform.settings.log_archive_after
        )

    return archive


def _culler(platform: Platform, sched: Scheduler) -> Callable[[], Awaitable[object]]:
    """Stop IDE sessions idle past KILN_IDE_IDLE_TIMEOUT (leader only; workspaces stay)."""
    from ide_broker.broker import Broker

    async def cull() -> int:
        if not sched.leadership.is_leader:
            return 0
        broker = platform.services.get("ide_broker") or Broker(platform)
        return await broker.cull(sched.clock.now(), platform.settings.ide_idle_timeout)

    return cull


async def scheduler_part(platform: Platform) -> Callable[[], Awaitable[None]]:
    """Start the scheduler inside another process (``kiln up``); returns its stopper."""
    events = platform.services.get("events")
    own_events = events is None
    if own_events:
        events = EventListener(platform.db)
        await events.start()
        platform.services["events"] = events
    sched = build_scheduler(platform, events)
    platform.services["scheduler"] = sched
    await sched.start()

    async def stop() -> None:
        await sched.stop()
        if own_events:
            await events.stop()

    return stop


async def _metrics(request: web.Request) -> web.Response:
    platform: Platform = request.app["platform"]
    async with platform.db.acquire() as conn:
        await metrics.collect_db_gauges(conn)
    return web.Response(body=metrics.render(), content_type="text/plain")


async def _ready(request: web.Request) -> web.Response:
    ok, reason = await request.app["platform"].db.ready()
    return web.json_response(
        {"status": "ok" if ok else "unavailable", "reason": reason}, status=200 if ok else 503
    )


async def run_scheduler(settings: Settings, port: int) -> None:
    sock = bind_socket(settings.host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    platform = await Platform.open(settings)
    runner: web.AppRunner | None = None
    stopper: Callable[[], Awaitable[None]] | None = None
    stop_engine: Callable[[], Awaitable[None]] | None = None
    try:
        stopper = await scheduler_part(platform)
        # the dispatcher and run monitor (after the scheduler: it owns the LISTEN connection)
        from server.runs.engine import start_engine

        stop_engine = await start_engine(platform)
        app = web.Application()
        app["platform"] = platform
        app.router.add_get("/healthz", lambda _r: web.json_response({"status": "ok"}))
        app.router.add_get("/readyz", _ready)
        app.router.add_get("/metrics", _metrics)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        print(
            f"Kiln scheduler is ready (metrics at http://{settings.host}:{sock.getsockname()[1]}"
            "/metrics)",
            flush=True,
        )
        await stop.wait()
    finally:
        # each part stops on its own: one failing must not leave the others running
        for name, fn in (("runs", stop_engine), ("scheduler", stopper)):
            if fn is None:
                continue
            try:
                await fn()
            except Exception:
                log.exception("stopping %s failed", name)
        if runner is not None:
            await runner.cleanup()
        sock.close()
        await platform.close()
