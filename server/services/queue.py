"""Why a queued run is waiting, and where it stands in its account's queue.

The answer mirrors the dispatcher's rules (``server.dispatcher``): runs of a
job are serial, DuckDB files have one writer, an account has ``run_slots``.
It is computed on read from the same tables, so it is never stale state of
its own; it can only be a moment old.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from server.db import Database
from server.services.actor import Actor

_ACTIVE = """
SELECT r.id, r.job_id, c.adapter_type, c.details->>'path' AS duckdb_path
FROM run r JOIN environment e ON e.id = r.environment_id
LEFT JOIN warehouse_connection c ON c.id = e.connection_id
WHERE r.account_id = $1 AND r.status IN (2, 3)
"""

_QUEUED = """
SELECT r.id, r.job_id, r.priority, c.adapter_type, c.details->>'path' AS duckdb_path
FROM run r JOIN environment e ON e.id = r.environment_id
LEFT JOIN warehouse_connection c ON c.id = e.connection_id
WHERE r.account_id = $1 AND r.status = 1
ORDER BY r.priority DESC, r.id
"""


@dataclass(frozen=True, slots=True)
class QueueInfo:
    position: int  # 1 = next to be considered
    reason: str


def _duckdb(row: asyncpg.Record) -> str | None:
    return row["duckdb_path"] if row["adapter_type"] == "duckdb" and row["duckdb_path"] else None


async def queue_info(actor: Actor, db: Database, run_ids: list[int]) -> dict[int, QueueInfo]:
    """QueueInfo for those of ``run_ids`` that are queued in the actor's account."""
    if not run_ids:
        return {}
    async with db.acquire() as conn:
        active = await conn.fetch(_ACTIVE, actor.account_id)
        queued = await conn.fetch(_QUEUED, actor.account_id)
        slots = await conn.fetchval("SELECT run_slots FROM account WHERE id = $1", actor.account_id)
    wanted = set(run_ids)
    running_job = {r["job_id"]: r["id"] for r in active}
    busy_file = {f: r["id"] for r in active if (f := _duckdb(r))}
    first_of_job: dict[int, int] = {}
    out: dict[int, QueueInfo] = {}
    for position, run in enumerate(queued, start=1):
        job = run["job_id"]
        ahead = first_of_job.setdefault(job, run["id"])
        if run["id"] not in wanted:
            continue
        if job in running_job:
            reason = f"Waiting for run {running_job[job]} of the same job to finish"
        elif ahead != run["id"]:
            reason = f"Queued behind run {ahead} of the same job"
        elif (f := _duckdb(run)) and f in busy_file:
            reason = f"Waiting for run {busy_file[f]}, which writes the same DuckDB file"
        elif slots is not None and len(active) >= slots:
            reason = f"All {slots} run slots of the account are in use"
        else:
            reason = "Waiting to be dispatched"
        out[run["id"]] = QueueInfo(position, reason)
    return out
