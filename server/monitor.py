"""Run monitoring: no run stays starting or running without a live, reporting worker.

Plain functions, one per run state (after Dagster's ``run_monitoring``), called
for every active run on each tick by :class:`RunMonitor`, and once at start
to resolve what a previous process left behind. Each check reads the run,
decides, and acts through a conditional transition, so a race with the
worker (it finished just now) or another monitor (two schedulers) has one
winner; when a transition loses, the check re-reads nothing and does
nothing more: the winner's status stands.

``check_starting`` (status 2)
    * cancel requested: no worker handle yet → cancelled now; else as running.
    * no handle after ``launch_grace``: the dispatcher died between commit and
      launch → error "never launched".
    * worker exited or missing → error naming the cause (exit code, signal).
    * still not running after ``start_timeout`` → terminate, error.

``check_running`` (status 3)
    * cancel requested more than ``cancel_grace`` (10 s) ago and the run has
      not ended → ``launcher.terminate`` (kills dbt too) → cancelled, with the
      cancel reason (a timeout's reason says it timed out).
    * past its timeout (plus a small grace: the worker enforces it itself) and
      not yet cancelling → request cancel with a "timed out" reason; the
      worker stops, or the escalation above kills it.
    * worker exited or missing → terminate what is left of its process group
      → error "worker died: exit code N / killed by SIGKILL".
    * no heartbeat for three ``heartbeat_interval``s → terminate → error "lost
      heartbeat". On start (``resolve_orphans``) the heartbeat clock counts from
      the monitor's own start at the earliest, so workers that outlived a
      restarted API get three intervals to reach it again.

Every resolution is logged with ``run_id``, ``job_id`` and ``account_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from server.launchers.base import RunLauncher, WorkerHealth, WorkerState
from server.models import RunStatus
from server.platform import Platform
from server.runs import state

log = logging.getLogger("kiln.monitor")

_SQL = """
SELECT id, account_id, job_id, status, worker_handle, launcher, timeout_seconds,
       cancel_requested_at IS NOT NULL AS cancel_requested, cancel_reason,
       EXTRACT(EPOCH FROM now() - dequeued_at) AS since_dequeued,
       EXTRACT(EPOCH FROM now() - started_at) AS since_started,
       EXTRACT(EPOCH FROM now() - GREATEST(heartbeat_at, started_at, $1::timestamptz))
           AS since_heartbeat,
       EXTRACT(EPOCH FROM now() - cancel_requested_at) AS since_cancel
FROM run WHERE status = ANY($2::smallint[])
  AND ($3::bigint[] IS NULL OR account_id = ANY($3::bigint[])) {extra}
ORDER BY id
"""


@dataclass
class MonitorContext:
    platform: Platform
    launcher: RunLauncher
    heartbeat_interval: float
    cancel_grace: float = 10.0
    timeout_grace: float = 2.0
    launch_grace: float = 60.0
    start_timeout: float = 120.0
    started_at: Any = None  # DB time the monitor started (heartbeat grace after restarts)
    accounts: Collection[int] | None = None  # None: every account; else a shard
    actions: list[tuple[int, str]] = field(default_factory=list)

    @property
    def lost_after(self) -> float:
        return 3 * self.heartbeat_interval


def _extra(run: asyncpg.Record) -> dict[str, Any]:
    return {"run_id": run["id"], "job_id": run["job_id"], "account_id": run["account_id"]}


async def _end(
    ctx: MonitorContext,
    run: asyncpg.Record,
    to: RunStatus,
    message: str,
    expected: tuple[RunStatus, ...],
) -> bool:
    async with ctx.platform.db.acquire() as conn:
        row = await state.transition(conn, run["id"], to, expected=expected, message=message)
    if row is None:
        return False  # the worker (or another monitor) ended it first: their status stands
    ctx.actions.append((run["id"], message))
    level = logging.INFO if to == RunStatus.CANCELLED else logging.WARNING
    log.log(level, "run ended by the monitor: %s", message, extra=_extra(run))
    return True


def _ours(ctx: MonitorContext, run: asyncpg.Record) -> bool:
    return run["launcher"] in (None, ctx.launcher.kind)


async def _health(ctx: MonitorContext, run: asyncpg.Record) -> WorkerHealth:
    if not _ours(ctx, run):
        return WorkerHealth(WorkerState.UNKNOWN)
    try:
        return await ctx.launcher.check_health(run["id"], run["worker_handle"])
    except Exception:
        log.exception("check_health failed", extra=_extra(run))
        return WorkerHealth(WorkerState.UNKNOWN)


async def _terminate(ctx: MonitorContext, run: asyncpg.Record) -> None:
    if not _ours(ctx, run):
        return
    try:
        await ctx.launcher.terminate(run["id"], run["worker_handle"])
    except Exception:
        log.exception("terminating the worker failed", extra=_extra(run))


def _dead_reason(h: WorkerHealth) -> str:
    if h.reason:
        return h.reason
    if h.exit_code is not None:
        return f"exit code {h.exit_code}"
    return "the worker is gone"


async def _escalate_cancel(ctx: MonitorContext, run: asyncpg.Record) -> bool:
    if not run["cancel_requested"] or (run["since_cancel"] or 0) < ctx.cancel_grace:
        return False
    await _terminate(ctx, run)
    reason = run["cancel_reason"] or "Cancelled"
    return await _end(
        ctx,
        run,
        RunStatus.CANCELLED,
        f"{reason} (the worker did not stop within {ctx.cancel_grace:.0f} s and was killed)",
        (RunStatus.STARTING, RunStatus.RUNNING),
    )


async def check_starting(ctx: MonitorContext, run: asyncpg.Record) -> None:
    if run["cancel_requested"] and not run["worker_handle"]:
        await _end(
            ctx,
            run,
            RunStatus.CANCELLED,
            run["cancel_reason"] or "Cancelled",
            (RunStatus.STARTING,),
        )
        return
    if await _escalate_cancel(ctx, run):
        return
    since = float(run["since_dequeued"] or 0)
    if not run["worker_handle"]:
        if since > ctx.launch_grace:
            await _end(
                ctx,
                run,
                RunStatus.ERROR,
                f"The worker was never launched (no worker {since:.0f} s after dispatch)",
                (RunStatus.STARTING,),
            )
        return
    health = await _health(ctx, run)
    if health.state in (WorkerState.EXITED, WorkerState.MISSING):
        await _terminate(ctx, run)
        await _end(
            ctx,
            run,
            RunStatus.ERROR,
            f"The worker ended before the run started: {_dead_reason(health)}",
            (RunStatus.STARTING,),
        )
        return
    if since > ctx.start_timeout:
        await _terminate(ctx, run)
        await _end(
            ctx,
            run,
            RunStatus.ERROR,
            f"The worker did not start within {ctx.start_timeout:.0f} s",
            (RunStatus.STARTING,),
        )


async def check_running(ctx: MonitorContext, run: asyncpg.Record) -> None:
    if await _escalate_cancel(ctx, run):
        return
    timeout = run["timeout_seconds"] or 0
    if (
        timeout > 0
        and not run["cancel_requested"]
        and float(run["since_started"] or 0) > timeout + ctx.timeout_grace
    ):
        async with ctx.platform.db.acquire() as conn:
            flagged = await state.request_cancel(
                conn, run["id"], f"Timed out after {timeout} seconds (the job's timeout)"
            )
        if flagged is not None:
            ctx.actions.append((run["id"], "timeout"))
            log.info("run timed out; cancelling", extra=_extra(run))
        return
    health = await _health(ctx, run)
    if health.state in (WorkerState.EXITED, WorkerState.MISSING):
        await _terminate(ctx, run)  # dbt may outlive a worker killed with -9
        if run["cancel_requested"]:
            reason = run["cancel_reason"] or "Cancelled"
            await _end(
                ctx,
                run,
                RunStatus.CANCELLED,
                f"{reason} (the worker exited: {_dead_reason(health)})",
                (RunStatus.RUNNING,),
            )
        else:
            await _end(
                ctx,
                run,
                RunStatus.ERROR,
                f"The worker died: {_dead_reason(health)}",
                (RunStatus.RUNNING,),
            )
        return
    silent = float(run["since_heartbeat"] or 0)
    if silent > ctx.lost_after and not run["cancel_requested"]:  # else: escalation above
        await _terminate(ctx, run)
        await _end(
            ctx,
            run,
            RunStatus.ERROR,
            f"Lost the worker: no heartbeat for {silent:.0f} s "
            f"(expected every {ctx.heartbeat_interval:g} s)",
            (RunStatus.RUNNING,),
        )


CHECKS = {RunStatus.STARTING: check_starting, RunStatus.RUNNING: check_running}


async def monitor_once(ctx: MonitorContext, run_ids: list[int] | None = None) -> None:
    """Check every starting/running run (or just ``run_ids``) once."""
    extra = "AND id = ANY($4::bigint[])" if run_ids is not None else ""
    accounts = list(ctx.accounts) if ctx.accounts is not None else None
    args: list[Any] = [ctx.started_at, [2, 3], accounts]
    if run_ids is not None:
        args.append(run_ids)
    async with ctx.platform.db.acquire() as conn:
        runs = await conn.fetch(_SQL.format(extra=extra), *args)
    for run in runs:
        try:
            await CHECKS[RunStatus(run["status"])](ctx, run)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("monitor check failed: %s", exc, extra=_extra(run))
        except Exception:
            log.exception("monitor check failed", extra=_extra(run))


async def resolve_orphans(ctx: MonitorContext) -> None:
    """On start: runs a previous process left starting/running, checked the same way."""
    await monitor_once(ctx)


class RunMonitor:
    """Calls :func:`monitor_once` every ``interval`` seconds (first: :func:`resolve_orphans`)."""

    def __init__(self, ctx: MonitorContext, *, interval: float = 1.0) -> None:
        self.ctx = ctx
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self.ctx.platform.db.acquire() as conn:
            self.ctx.started_at = await conn.fetchval("SELECT now()")
        await resolve_orphans(self.ctx)
        self._task = asyncio.create_task(self._loop(), name="kiln-run-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await monitor_once(self.ctx)
            except Exception:
                log.exception("monitor pass failed")
