"""Run execution as a background part: launcher + dispatcher + monitor, started together.

``kiln up`` starts it beside the gateway (``server.serve``); ``kiln
scheduler`` can start it the same way with :func:`start_engine`. The
dispatcher listens on the process's shared ``EventListener``
(``platform.services["events"]``) when there is one, else on its own LISTEN
connection. Any number of engines may run against one database: see the
invariants in :mod:`server.dispatcher` and :mod:`server.monitor`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection

from server.config import Settings
from server.dispatcher import Dispatcher
from server.launchers.base import RunLauncher
from server.monitor import MonitorContext, RunMonitor
from server.platform import Platform
from server.runs import state

log = logging.getLogger("kiln.runs")


def make_launcher(settings: Settings) -> RunLauncher:
    """The launcher ``KILN_LAUNCHER`` names."""
    if settings.launcher == "kubernetes":
        from server.launchers.kubernetes import KubernetesRunLauncher

        return KubernetesRunLauncher.from_settings(settings)
    from server.launchers.local import LocalRunLauncher

    return LocalRunLauncher(settings)


async def start_engine(
    platform: Platform,
    *,
    launcher: RunLauncher | None = None,
    poll_interval: float = 5.0,
    monitor_interval: float | None = None,
    cancel_grace: float = 10.0,
    accounts: Collection[int] | None = None,
) -> Callable[[], Awaitable[None]]:
    """Start launcher, monitor and dispatcher; return the coroutine that stops them.

    Idempotent per process: a second call (say ``kiln up`` starting both the
    scheduler part and the runs part, each of which may start the engine)
    returns a stopper that does nothing.

    ``accounts`` limits both to those accounts (a shard; tests use it to leave
    other tests' runs alone).
    """
    if "dispatcher" in platform.services:  # already running in this process (kiln up composes
        # the scheduler part and this one; either may start it): one engine per process

        async def noop() -> None:
            return None

        return noop
    launcher = launcher or make_launcher(platform.settings)
    dispatcher = Dispatcher(platform, launcher, poll_interval=poll_interval, accounts=accounts)
    platform.services["dispatcher"] = dispatcher
    try:
        await launcher.start()
        platform.services["run_launcher"] = launcher
        hb = platform.settings.heartbeat_interval
        monitor = RunMonitor(
            MonitorContext(
                platform,
                launcher,
                heartbeat_interval=hb,
                cancel_grace=cancel_grace,
                accounts=accounts,
            ),
            interval=monitor_interval or min(1.0, hb),
        )
        await monitor.start()
        events = platform.services.get("events")
        own_conn = None
        unsubscribe: Callable[[], None] | None = None
        if events is not None:
            unsubscribe = events.subscribe(state.CHANNEL, dispatcher.on_event)
            events.on_reconnect(dispatcher.wake)
        else:
            own_conn = await platform.db.connect()
            await own_conn.add_listener(
                state.CHANNEL, lambda _c, _p, _ch, payload: dispatcher.on_event(payload)
            )
        await dispatcher.start()
        dispatcher.wake()
    except BaseException:
        platform.services.pop("dispatcher", None)
        raise

    async def stop() -> None:
        platform.services.pop("dispatcher", None)
        await dispatcher.stop()
        if unsubscribe is not None:
            unsubscribe()
        if own_conn is not None:
            with contextlib.suppress(Exception):
                await own_conn.close()
        await monitor.stop()
        await launcher.close()

    return stop
