"""The scheduler: independent background tasks around one leader election.

=================  ==========  ===========================================
task               who         what
=================  ==========  ===========================================
cron               leader      :func:`ticks.evaluate` every ``cron_interval``
chains             every       job-completion triggers on ``run_events``
chain-scan         leader      catch chains missed while nobody listened
cleanup            leader      retention and housekeeping
(extra)            as given    dispatcher, monitor, log archive, IDE culler
=================  ==========  ===========================================

Correctness never rests on there being one leader (see ``leader.py``);
leadership only avoids doing the same work twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from server.clock import Clock, WallClock
from server.events import EventListener
from server.platform import Platform
from server.runs.state import RunEvent
from server.scheduler import chains, cleanup, ticks
from server.scheduler.leader import Leadership
from server.scheduler.tasks import PeriodicTask

log = logging.getLogger("kiln.scheduler")


class Scheduler:
    def __init__(
        self,
        platform: Platform,
        events: EventListener,
        *,
        clock: Clock | None = None,
        cron_interval: float = 10.0,
        cleanup_interval: float = 300.0,
        chain_scan_interval: float = 60.0,
        leader_retry: float = 5.0,
    ) -> None:
        self.platform = platform
        self.events = events
        self.clock = clock or WallClock()
        self.leadership = Leadership(platform.db, retry_interval=leader_retry)
        self.tasks: list[PeriodicTask] = [
            PeriodicTask("cron", cron_interval, self._cron),
            PeriodicTask("chain-scan", chain_scan_interval, self._chain_scan, initial_delay=1),
            PeriodicTask("cleanup", cleanup_interval, self._cleanup, initial_delay=5),
        ]
        self._pending: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Callable[[], None] | None = None

    def add_task(
        self, name: str, interval: float, fn: Callable[[], Awaitable[Any]]
    ) -> PeriodicTask:
        task = PeriodicTask(name, interval, fn)
        self.tasks.append(task)
        return task

    def task(self, name: str) -> PeriodicTask:
        return next(t for t in self.tasks if t.name == name)

    async def start(self) -> None:
        self.leadership.start()
        self._unsubscribe = self.events.subscribe("run_events", self._on_run_event)
        for t in self.tasks:
            t.start()
        self._pending.add(asyncio.create_task(self._wake_on_leadership()))

    async def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        for t in self.tasks:
            await t.stop()
        for p in list(self._pending):
            p.cancel()
        await self.leadership.stop()

    async def _wake_on_leadership(self) -> None:
        while True:
            await self.leadership.changed.wait()
            self.leadership.changed.clear()
            if self.leadership.is_leader:
                self.task("cron").wake()

    async def _cron(self) -> ticks.TickPass | None:
        if not await self.leadership.still_leader():
            return None
        result = await ticks.evaluate(self.platform.db, self.clock.now())
        if result.created or result.superseded:
            log.info(
                "cron pass",
                extra={
                    "jobs": result.jobs,
                    "runs_created": result.created,
                    "superseded": result.superseded,
                },
            )
        return result

    async def _chain_scan(self) -> list[int]:
        if not self.leadership.is_leader:
            return []
        return await chains.scan_recent(self.platform.db, self.clock.now())

    async def _cleanup(self) -> cleanup.CleanupPass | None:
        if not self.leadership.is_leader:
            return None
        s = self.platform.settings
        return await cleanup.retention(
            self.platform.db, self.platform.store, self.clock.now(), s.run_retention_days
        )

    def _on_run_event(self, payload: str) -> None:
        try:
            event = RunEvent.parse(payload)
        except (ValueError, TypeError):
            return
        if event.kind == "status" and event.status >= 10:
            task = asyncio.create_task(chains.on_event(self.platform.db, event))
            self._pending.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("job-completion trigger failed: %s", task.exception())
