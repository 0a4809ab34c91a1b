"""Retention and housekeeping, in bounded batches so no pass holds locks for long.

* Runs finished more than ``KILN_RUN_RETENTION_DAYS`` ago are deleted with
  their steps, log lines and artifact rows (foreign-key cascade) and their
  objects (``artifacts/<account>/<run>/...`` and ``logs/<account>/<run>...``).
  Objects go first: a crash between leaves a run row whose objects are gone,
  which the next pass deletes; never an orphaned object nobody points at.
  Runs that are not final are never touched, however old.
* Expired browser sessions are deleted.
* Webhook delivery records older than ``DELIVERY_RETENTION`` are pruned once
  delivered or finally failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from server import metrics
from server.db import Database
from server.objectstore import ObjectStore

log = logging.getLogger("kiln.scheduler.cleanup")
BATCH = 200
DELIVERY_RETENTION = timedelta(days=30)


@dataclass
class CleanupPass:
    runs: int = 0
    objects: int = 0
    sessions: int = 0
    deliveries: int = 0


async def delete_run_objects(store: ObjectStore, account_id: int, run_id: int) -> int:
    n = 0
    for prefix in (f"artifacts/{account_id}/{run_id}/", f"logs/{account_id}/{run_id}."):
        keys = [o.key async for o in store.list(prefix)]
        for key in keys:
            await store.delete(key)
            n += 1
    return n


async def retention(db: Database, store: ObjectStore, now: datetime, days: int) -> CleanupPass:
    result = CleanupPass()
    cutoff = now - timedelta(days=days)
    while True:
        async with db.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, account_id FROM run WHERE status >= 10 AND finished_at < $1 "
                "ORDER BY finished_at LIMIT $2",
                cutoff,
                BATCH,
            )
        for row in rows:
            result.objects += await delete_run_objects(store, row["account_id"], row["id"])
        if rows:
            async with db.acquire() as conn:
                deleted = await conn.fetch(
                    "DELETE FROM run WHERE id = ANY($1::bigint[]) AND status >= 10 "
                    "AND finished_at < $2 RETURNING id",
                    [r["id"] for r in rows],
                    cutoff,
                )
            result.runs += len(deleted)
        if len(rows) < BATCH:
            break
    async with db.acquire() as conn:
        result.sessions = _count(
            await conn.execute("DELETE FROM login_session WHERE expires_at < $1", now)
        )
        result.deliveries = _count(
            await conn.execute(
                "DELETE FROM webhook_delivery WHERE created_at < $1 AND status <> 'pending'",
                now - DELIVERY_RETENTION,
            )
        )
    for what in ("runs", "objects", "sessions", "deliveries"):
        metrics.CLEANUP.labels(what).inc(getattr(result, what))
    if result.runs or result.objects:
        log.info("retention pass", extra={"runs": result.runs, "objects": result.objects})
    return result


def _count(status: str) -> int:
    try:
        return int(status.rsplit(" ", 1)[1])
    except (IndexError, ValueError):
        return 0
