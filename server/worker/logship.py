"""Adaptive batching of log lines from the worker to the API.

Live latency matters (someone watches the run), so there is never a fixed
delay: a line that arrives while nothing is being sent leaves at once, alone.
Lines coalesce only while a send is in flight, so under load batches grow by
themselves and the number of requests stays bounded by the API's speed, not
by dbt's output rate. Bounds:

* a batch holds at most ``max_batch`` lines (and about ``max_bytes``);
* at most ``max_pending`` lines wait; ``put`` then blocks, which blocks the
  reader of dbt's stdout and so dbt itself: backpressure, never a lost line.

Every line gets its ``seq`` here (1-based, gap-free). A failed send is
retried with the same lines and seqs, and the API stores ``(run, seq)``
once, so a retry after a lost response neither loses nor doubles a line.
Lines are sent strictly in order: the next batch leaves only after the
previous one was acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("kiln.worker.logs")

Send = Callable[[list[dict[str, Any]]], Awaitable[None]]


class LogShipper:
    def __init__(
        self,
        send: Send,
        *,
        max_batch: int = 1000,
        max_bytes: int = 1_000_000,
        max_pending: int = 50_000,
    ) -> None:
        self._send = send
        self.max_batch = max_batch
        self.max_bytes = max_bytes
        self.max_pending = max_pending
        self._pending: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False
        self.seq = 0
        self.sent = 0
        self.batches = 0
        self.failed: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="log-shipper")

    def put_nowait(self, line: dict[str, Any]) -> int:
        """Queue a line (ts, level, message, step, eventName, nodeId); returns its seq."""
        if self._closed:
            raise RuntimeError("shipper closed")
        self.seq += 1
        line["seq"] = self.seq
        self._pending.append(line)
        if len(self._pending) >= self.max_pending:
            self._room.clear()
        self._wake.set()
        return self.seq

    async def put(self, line: dict[str, Any]) -> int:
        """Like put_nowait, but waits while ``max_pending`` lines are queued."""
        while not self._room.is_set() and self.failed is None:
            await self._room.wait()
        return self.put_nowait(line)

    def _take(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        size = 0
        while self._pending and len(batch) < self.max_batch:
            line = self._pending[0]
            n = len(line.get("message") or "") + 100
            if batch and size + n > self.max_bytes:
                break
            batch.append(self._pending.popleft())
            size += n
        if len(self._pending) < self.max_pending:
            self._room.set()
        return batch

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._take()
            try:
                await self._send(batch)
            except BaseException as exc:
                # the client already retried for as long as it was allowed to
                self.failed = exc
                self._pending.clear()
                self._room.set()
                if not isinstance(exc, Exception):
                    raise
                log.error("log shipping stopped: %s", exc)
                return
            self.sent += len(batch)
            self.batches += 1

    async def close(self) -> None:
        """Send everything queued, then stop."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
