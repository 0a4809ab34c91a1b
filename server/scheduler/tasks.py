"""Background tasks of the scheduler: each runs on its own interval, independently.

A task that raises is logged (with its name) and retried on its next
interval; it never takes the other tasks down. Every pass is counted and
timed in ``/metrics`` (``kiln_task_runs_total``, ``kiln_task_errors_total``,
``kiln_task_seconds``). ``wake()`` runs a task early (e.g. on a NOTIFY).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from server import metrics

log = logging.getLogger("kiln.scheduler")


class PeriodicTask:
    def __init__(
        self,
        name: str,
        interval: float,
        fn: Callable[[], Awaitable[Any]],
        *,
        initial_delay: float = 0.0,
    ) -> None:
        self.name = name
        self.interval = interval
        self.fn = fn
        self.initial_delay = initial_delay
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.passes = 0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"kiln-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> Any:
        started = time.perf_counter()
        try:
            result = await self.fn()
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.TASK_ERRORS.labels(self.name).inc()
            log.exception("background task failed", extra={"task": self.name})
            return None
        finally:
            metrics.TASK_SECONDS.labels(self.name).observe(time.perf_counter() - started)
            metrics.TASK_RUNS.labels(self.name).inc()
            self.passes += 1
        return result

    async def _loop(self) -> None:
        if self.initial_delay:
            await asyncio.sleep(self.initial_delay)
        while True:
            self._wake.clear()
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
