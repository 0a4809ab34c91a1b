"""The dispatcher: moves queued runs to starting and hands them to the launcher.

It runs inside ``kiln up`` and ``kiln scheduler``, possibly in several
processes at once. It wakes on ``NOTIFY run_events`` (a run was created, or a
run ended and freed a slot) and, as a fallback, every ``poll_interval``.

Invariants (each holds with any number of dispatchers in any processes):

1. A run leaves ``queued`` only through ``state.transition(..., expected=
   (queued,))``: a run cancelled meanwhile, or taken by another dispatcher,
   is simply not moved.
2. Decisions for one account are serialized: a pass takes the account row
   with ``FOR NO KEY UPDATE`` (a blocking row lock, not an advisory lock, and
   one that does not conflict with the key-share locks that inserting runs,
   steps or artifacts take), then counts the account's active runs and
   moves runs in the same transaction. So the counts it decides on are never
   stale, and two dispatchers cannot both fill the last slot or both start
   two runs of one job.
3. Candidate runs are read ``FOR UPDATE OF run SKIP LOCKED``, oldest first
   within priority (``priority DESC, id``): a run row another transaction
   is changing (a cancel in flight) is skipped, not waited for.
4. Runs of one job are strictly serial: a job with a run starting or
   running gets no other run; a job's older queued run is always considered
   before its newer ones, so they start in order.
5. An account never has more than ``account.run_slots`` runs starting or
   running.
6. DuckDB allows one writing process per database file, so two runs whose
   environments use the same DuckDB file (``connection.details.path``) never
   run at once: they are serialized here, like runs of one job (the
   per-file alternative, a copy per run, would make each run's results
   invisible to the next).
7. The run token is generated here, only its SHA-256 is stored (with the
   ``starting`` transition); the clear token goes only to the launcher.
   Launching happens after the commit, so a worker never calls the API for a
   run that is not yet ``starting``. If this process dies between the commit
   and the launch, the run stays ``starting`` without a handle and the
   monitor fails it after its launch grace.
8. A launch that raises ends the run in error with the reason (and the
   exception logged with run, job and account ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from dataclasses import dataclass

import asyncpg

from server import crypto
from server.launchers.base import LaunchSpec, RunLauncher
from server.models import RunStatus
from server.platform import Platform
from server.runs import state

log = logging.getLogger("kiln.dispatcher")

CANDIDATES_PER_PASS = 200

_ACTIVE_SQL = """
SELECT r.id, r.job_id, c.adapter_type, c.details->>'path' AS duckdb_path
FROM run r
JOIN environment e ON e.id = r.environment_id
LEFT JOIN warehouse_connection c ON c.id = e.connection_id
WHERE r.account_id = $1 AND r.status = ANY($2::smallint[])
"""

_QUEUED_SQL = """
SELECT r.id, r.job_id, r.timeout_seconds, c.adapter_type, c.details->>'path' AS duckdb_path
FROM run r
JOIN environment e ON e.id = r.environment_id
LEFT JOIN warehouse_connection c ON c.id = e.connection_id
WHERE r.account_id = $1 AND r.status = 1
ORDER BY r.priority DESC, r.id
LIMIT $2
FOR UPDATE OF r SKIP LOCKED
"""


@dataclass(frozen=True, slots=True)
class Picked:
    run_id: int
    account_id: int
    job_id: int
    timeout_seconds: int
    token: str


def _duckdb_file(row: asyncpg.Record) -> str | None:
    if row["adapter_type"] == "duckdb" and row["duckdb_path"]:
        return str(row["duckdb_path"])
    return None


async def pick_for_account(
    conn: asyncpg.Connection, account_id: int, launcher: str
) -> list[Picked]:
    """One account's decision, in one transaction (see invariants 2 to 7)."""
    picked: list[Picked] = []
    async with conn.transaction():
        slots = await conn.fetchval(
            "SELECT run_slots FROM account WHERE id = $1 FOR NO KEY UPDATE", account_id
        )
        if slots is None:
            return picked
        active = await conn.fetch(_ACTIVE_SQL, account_id, [2, 3])
        free = slots - len(active)
        if free <= 0:
            return picked
        busy_jobs = {r["job_id"] for r in active}
        busy_files = {f for r in active if (f := _duckdb_file(r))}
        for cand in await conn.fetch(_QUEUED_SQL, account_id, CANDIDATES_PER_PASS):
            job, dfile = cand["job_id"], _duckdb_file(cand)
            if job in busy_jobs:
                continue
            busy_jobs.add(job)  # newer runs of this job wait behind this one, started or not
            if dfile is not None and dfile in busy_files:
                continue
            token = crypto.new_token("run")
            row = await state.transition(
                conn,
                cand["id"],
                RunStatus.STARTING,
                expected=(RunStatus.QUEUED,),
                set_fields={"worker_token_hash": crypto.hash_token(token), "launcher": launcher},
            )
            if row is None:
                continue
            picked.append(Picked(cand["id"], account_id, job, cand["timeout_seconds"] or 0, token))
            if dfile is not None:
                busy_files.add(dfile)
            free -= 1
            if free <= 0:
                break
    return picked


async def launch(platform: Platform, launcher: RunLauncher, p: Picked) -> str | None:
    """Start the worker of a picked run; on failure end the run in error (invariant 8)."""
    extra = {"run_id": p.run_id, "job_id": p.job_id, "account_id": p.account_id}
    spec = LaunchSpec(
        run_id=p.run_id,
        account_id=p.account_id,
        job_id=p.job_id,
        token=p.token,
        api_url=platform.settings.api_url,
        timeout_seconds=p.timeout_seconds or None,
    )
    try:
        handle = await launcher.launch(spec)
    except Exception as exc:
        log.exception("launching the worker failed", extra=extra)
        async with platform.db.acquire() as conn:
            await state.transition(
                conn,
                p.run_id,
                RunStatus.ERROR,
                expected=(RunStatus.STARTING,),
                message=f"Could not launch the worker ({launcher.kind}): {exc}",
            )
        return None
    async with platform.db.acquire() as conn:
        await conn.execute(
            "UPDATE run SET worker_handle = $2, updated_at = now() WHERE id = $1 AND status < 10",
            p.run_id,
            handle,
        )
    log.info("launched worker %s", handle, extra=extra)
    return handle


async def dispatch_once(
    platform: Platform, launcher: RunLauncher, accounts: Collection[int] | None = None
) -> list[Picked]:
    """One pass over every account with queued runs (or only ``accounts``); the runs launched."""
    async with platform.db.acquire() as conn:
        accounts = [
            r["account_id"]
            for r in await conn.fetch(
                "SELECT DISTINCT account_id FROM run WHERE status = 1"
                " AND ($1::bigint[] IS NULL OR account_id = ANY($1::bigint[]))"
                " ORDER BY account_id",
                list(accounts) if accounts is not None else None,
            )
        ]
        picked: list[Picked] = []
        for account_id in accounts:
            picked += await pick_for_account(conn, account_id, launcher.kind)
    if picked:
        await asyncio.gather(*(launch(platform, launcher, p) for p in picked))
    return picked


class Dispatcher:
    """The background loop around :func:`dispatch_once` (see the module docstring)."""

    def __init__(
        self,
        platform: Platform,
        launcher: RunLauncher,
        *,
        poll_interval: float = 5.0,
        accounts: Collection[int] | None = None,
    ) -> None:
        self.platform = platform
        self.accounts = accounts  # None: every account; else a shard (or a test's tenants)
        self.launcher = launcher
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: list[object] = []
        self.passes = 0

    def wake(self) -> None:
        self._wake.set()

    def on_event(self, payload: str) -> None:
        """``run_events`` callback: a new run, or a final status that frees a slot."""
        try:
            ev = state.RunEvent.parse(payload)
        except (ValueError, TypeError):
            return
        if ev.kind == "created" or (ev.kind == "status" and ev.status >= RunStatus.SUCCESS):
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="kiln-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        delay = 0.5
        while True:
            self._wake.clear()
            try:
                await dispatch_once(self.platform, self.launcher, self.accounts)
                self.passes += 1
                delay = 0.5
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("dispatch pass failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            except Exception:
                log.exception("dispatch pass failed")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
