"""Leader election among ``kiln scheduler`` processes: one PostgreSQL advisory lock.

The leader holds ``pg_advisory_lock(CRON_LOCK)`` on a dedicated connection
for as long as it leads. The lock dies with the connection, so a leader that
crashes or is killed releases it at once and a follower, retrying every
``retry_interval`` seconds (default 5), takes over well within 15 s.

Leadership only decides who *evaluates cron*; correctness never depends on
it: tick creation is also guarded by ``FOR NO KEY UPDATE SKIP LOCKED`` on the
job row and the unique (job, scheduled_for) key, so even two leaders during
a network split cannot fire one tick twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

import asyncpg

from server import metrics
from server.db import Database

log = logging.getLogger("kiln.scheduler.leader")
CRON_LOCK = 7_471_100


class Leadership:
    def __init__(self, db: Database, *, retry_interval: float = 5.0, lock_key: int = CRON_LOCK):
        self.db = db
        self.retry_interval = retry_interval
        self.lock_key = lock_key
        self.is_leader = False
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._campaign(), name="kiln-leader")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop()

    async def _drop(self) -> None:
        if self.is_leader:
            log.info("leadership released", extra={"holder": self.holder})
        self._set(False)
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    def _set(self, leading: bool) -> None:
        if leading != self.is_leader:
            self.is_leader = leading
            metrics.IS_LEADER.set(1 if leading else 0)
            self.changed.set()

    async def still_leader(self) -> bool:
        """Check the lock's connection is alive; drop leadership if not."""
        conn = self._conn
        if not self.is_leader or conn is None:
            return False
        try:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
            return True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            await self._drop()
            return False

    async def _campaign(self) -> None:
        while True:
            try:
                if self._conn is None or self._conn.is_closed():
                    self._set(False)
                    self._conn = await self.db.connect()
                if not self.is_leader:
                    got = await self._conn.fetchval(
                        "SELECT pg_try_advisory_lock($1)", self.lock_key
                    )
                    if got:
                        self._set(True)
                        log.info("leading cron evaluation", extra={"holder": self.holder})
                else:
                    await self.still_leader()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("leader election: %s", exc, extra={"holder": self.holder})
                await self._drop()
            await asyncio.sleep(self.retry_interval)
