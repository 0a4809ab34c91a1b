"""The process's one LISTEN connection, shared by everything that waits on NOTIFY.

Channels: ``run_events`` (run status changes, see :mod:`server.runs.state`),
``run_logs`` (new log lines) and ``ide_events`` (IDE session states).
Consumers register a callback per channel; callbacks run on the event loop
and must not block (hand work to a task or a queue).

Invariants:

* One dedicated connection per process, whatever the number of consumers.
* On connection loss it reconnects with exponential backoff (0.1 s → 5 s)
  and then calls every ``on_reconnect`` callback: NOTIFY is not durable, so
  consumers re-read what they may have missed from the tables.
* A callback that raises is logged and does not stop delivery to others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

import asyncpg

from server.db import Database

log = logging.getLogger("kiln.events")
Callback = Callable[[str], None]


class EventListener:
    def __init__(
        self, db: Database, channels: tuple[str, ...] = ("run_events", "run_logs", "ide_events")
    ) -> None:
        self.db = db
        self.channels = channels
        self._callbacks: dict[str, list[Callback]] = defaultdict(list)
        self._reconnect: list[Callable[[], Awaitable[None] | None]] = []
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()
        self.reconnects = 0

    def subscribe(self, channel: str, callback: Callback) -> Callable[[], None]:
        if channel not in self.channels:
            raise ValueError(f"not listening on {channel}")
        self._callbacks[channel].append(callback)
        return lambda: self._callbacks[channel].remove(callback)

    def on_reconnect(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        self._reconnect.append(callback)

    @property
    def connection(self) -> asyncpg.Connection | None:
        return self._conn

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._watch(), name="kiln-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        for cb in list(self._callbacks.get(channel, ())):
            try:
                cb(payload)
            except Exception:
                log.exception("event callback failed", extra={"channel": channel})

    async def _connect(self) -> None:
        conn = await self.db.connect()
        conn.add_termination_listener(lambda _c: self._lost.set())
        for ch in self.channels:
            await conn.add_listener(ch, self._dispatch)
        self._conn = conn
        self._lost.clear()
        self.connected.set()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self.connected.clear()
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def _watch(self) -> None:
        while True:
            # wake on termination, and probe now and then: a silently dead socket
            # (no FIN) would otherwise never be noticed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), 10)
            if not self._lost.is_set():
                try:
                    assert self._conn is not None
                    await asyncio.wait_for(self._conn.fetchval("SELECT 1"), 5)
                    continue
                except (
                    OSError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    TimeoutError,
                    AssertionError,
                ):
                    pass
            log.warning("lost the LISTEN connection; reconnecting")
            await self._close()
            delay = 0.1
            while True:
                try:
                    await self._connect()
                    break
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as e:
                    log.warning("LISTEN reconnect failed: %s", e)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            self.reconnects += 1
            for cb in list(self._reconnect):
                try:
                    result = cb()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("reconnect callback failed")
