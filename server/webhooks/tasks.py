"""The scheduler's webhook tasks: record events from ``run_events``, send due deliveries.

=================  ======  ==================================================
task               who     what
=================  ======  ==================================================
webhook-events     every   rows for runs named by NOTIFY (status: running or
                           final), plus a catch-up scan on start and then
                           every ``scan_interval`` by the leader
webhook-delivery   every   claim and send due rows; woken by new rows
=================  ======  ==================================================

Both tasks subscribe on start and unsubscribe on stop, on the process's one
LISTEN connection (:class:`server.events.EventListener`). A stopping
delivery task lets the attempts it already started finish (bounded by the
HTTP timeout), so a clean restart neither loses nor repeats a delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from server.runs.state import RunEvent
from server.scheduler.tasks import PeriodicTask
from server.webhooks import delivery

if TYPE_CHECKING:
    from server.scheduler.daemon import Scheduler

log = logging.getLogger("kiln.webhooks")
SCAN_WINDOW = timedelta(hours=1)


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class DeliveryTask(PeriodicTask):
    """Sends due deliveries every ``interval`` (and at once when woken)."""

    def __init__(self, deliverer: delivery.Deliverer, interval: float) -> None:
        super().__init__("webhook-delivery", interval, deliverer.run_once)
        self.deliverer = deliverer
        self._busy = asyncio.Lock()

    async def run_once(self) -> object:
        async with self._busy:
            return await super().run_once()

    async def stop(self) -> None:
        # let attempts in flight end (each is bounded by the HTTP timeout)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.deliverer.timeout + 5):
                await self._busy.acquire()
        await super().stop()
        if self._busy.locked():
            self._busy.release()
        await self.deliverer.close()


class EventsTask(PeriodicTask):
    """Turns ``run_events`` into delivery rows; scans for missed events."""

    def __init__(self, sched: Scheduler, deliveries: DeliveryTask, scan_interval: float) -> None:
        super().__init__("webhook-events", scan_interval, self._pass)
        self.sched = sched
        self.deliveries = deliveries
        self.scan_interval = scan_interval
        self._runs: set[int] = set()
        self._scanned_at: float | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        self._unsubscribe = self.sched.events.subscribe("run_events", self._on_event)
        super().start()

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await super().stop()

    def _on_event(self, payload: str) -> None:
        try:
            event = RunEvent.parse(payload)
        except (ValueError, TypeError):
            return
        if event.kind == "status" and (event.status == 3 or event.status >= 10):
            self._runs.add(event.run)
            self.wake()

    async def _pass(self) -> int:
        runs, self._runs = self._runs, set()
        db = self.sched.platform.db
        try:
            created = await delivery.record_runs(db, sorted(runs))
        except BaseException:
            self._runs |= runs  # try them again on the next pass
            raise
        # every process scans once on start (what happened while it was down); then the
        # leader alone, once per interval (not on every woken pass)
        now = time.monotonic()
        due = self._scanned_at is None or (
            self.sched.leadership.is_leader and now - self._scanned_at >= self.scan_interval * 0.9
        )
        if due:
            created += await delivery.scan(db, self.sched.clock.now() - SCAN_WINDOW)
            self._scanned_at = now
        if created:
            self.deliveries.wake()
        return created


def add_webhook_tasks(sched: Scheduler) -> None:
    """Register the webhook tasks on a scheduler (``build_scheduler``).

    ``KILN_WEBHOOK_INTERVAL`` (s, default 2): how often due retries are looked
    for; ``KILN_WEBHOOK_BACKOFF`` (s, default 10): the first retry's delay,
    doubled each time; ``KILN_WEBHOOK_TIMEOUT`` (s, default 10).
    """
    platform = sched.platform
    deliverer = delivery.Deliverer(
        platform.db,
        platform.vault,
        timeout=_env_float("KILN_WEBHOOK_TIMEOUT", delivery.TIMEOUT),
        backoff=_env_float("KILN_WEBHOOK_BACKOFF", delivery.BACKOFF),
    )
    deliveries = DeliveryTask(deliverer, _env_float("KILN_WEBHOOK_INTERVAL", 2.0))
    events = EventsTask(sched, deliveries, _env_float("KILN_WEBHOOK_SCAN_INTERVAL", 60.0))
    sched.tasks.append(events)
    sched.tasks.append(deliveries)
