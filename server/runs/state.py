"""The run state machine: every status change of a run or a step, in one place.

Statuses and codes follow dbt Cloud: queued 1 → starting 2 → running 3 →
success 10 | error 20 | cancelled 30. Allowed moves::

    queued   → starting (dispatch) | cancelled
    starting → running (worker started) | error (launch failed, lost) | cancelled
    running  → success | error | cancelled

Invariants:

* A transition is ONE conditional ``UPDATE ... WHERE id = $1 AND status =
  ANY(<expected>)``. Two racers (cancel versus finish, two schedulers) both
  try; exactly one gets a row back, the other gets ``None`` and must re-read
  rather than assume.
* Timestamps are set by the transition that implies them (``dequeued_at`` on
  starting, ``started_at`` on running, ``finished_at`` on a final status),
  with the database clock.
* A final status is final: nothing moves a run out of it.
* Every transition (and every step change) emits ``NOTIFY run_events`` with a
  JSON payload ``{"run", "account", "job", "project", "environment",
  "status", "kind"}`` in the same transaction, so listeners (subscriptions,
  webhooks, job chaining, the dispatcher) see only committed changes.
* The run-scoped worker token is valid while the run is not final: ending a
  run clears its hash.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from server.models import RunStatus

CHANNEL = "run_events"

Q, S, R = RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING
ALLOWED: dict[RunStatus, tuple[RunStatus, ...]] = {
    RunStatus.STARTING: (Q,),
    RunStatus.RUNNING: (S,),
    RunStatus.SUCCESS: (R,),
    RunStatus.ERROR: (S, R),
    RunStatus.CANCELLED: (Q, S, R),
}

_RETURNING = (
    "id, account_id, job_id, project_id, environment_id, status, status_message, "
    "trigger_kind, previous_run_id, worker_handle, launcher, created_at, dequeued_at, "
    "started_at, finished_at, cancel_requested_at"
)


@dataclass(frozen=True, slots=True)
class RunEvent:
    run: int
    account: int
    job: int
    project: int
    environment: int
    status: int
    kind: str  # created | status | step | cancel_requested | heartbeat

    def payload(self) -> str:
        return json.dumps(
            {
                "run": self.run,
                "account": self.account,
                "job": self.job,
                "project": self.project,
                "environment": self.environment,
                "status": self.status,
                "kind": self.kind,
            },
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, payload: str) -> RunEvent:
        return cls(**json.loads(payload))

    @classmethod
    def of(cls, row: Any, kind: str) -> RunEvent:
        return cls(
            run=row["id"],
            account=row["account_id"],
            job=row["job_id"],
            project=row["project_id"],
            environment=row["environment_id"],
            status=row["status"],
            kind=kind,
        )


async def notify(conn: asyncpg.Connection, event: RunEvent) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, event.payload())


async def transition(
    conn: asyncpg.Connection,
    run_id: int,
    to: RunStatus,
    *,
    expected: Sequence[RunStatus] | None = None,
    message: str | None = None,
    set_fields: dict[str, Any] | None = None,
) -> asyncpg.Record | None:
    """Move ``run_id`` to ``to`` if its status is one of ``expected``.

    Returns the updated row, or None when another actor got there first (or
    the run does not exist). ``expected`` defaults to every status ``to`` may
    follow; narrowing it is how callers say which race they accept.
    """
    allowed = ALLOWED[to]
    exp = tuple(expected) if expected is not None else allowed
    if not set(exp) <= set(allowed):
        raise ValueError(f"illegal transition {[s.name for s in exp]} -> {to.name}")
    sets = ["status = $2", "updated_at = now()"]
    args: list[Any] = [run_id, int(to), [int(s) for s in exp]]
    if to == RunStatus.STARTING:
        sets.append("dequeued_at = now()")
    elif to == RunStatus.RUNNING:
        sets.append("started_at = now()")
        sets.append("heartbeat_at = now()")
    if to.is_final:
        sets.append("finished_at = now()")
        sets.append("worker_token_hash = NULL")
        # a run cancelled or failed before it ran still gets coherent times
        sets.append("dequeued_at = COALESCE(dequeued_at, now())")
    if message is not None:
        args.append(message[:10_000])
        sets.append(f"status_message = ${len(args)}")
    for name, value in (set_fields or {}).items():
        args.append(value)
        sets.append(f"{name} = ${len(args)}")
    sql = (
        f"UPDATE run SET {', '.join(sets)} WHERE id = $1 AND status = ANY($3::smallint[]) "
        f"RETURNING {_RETURNING}"
    )
    async with conn.transaction():
        row = await conn.fetchrow(sql, *args)
        if row is not None:
            await notify(conn, RunEvent.of(row, "status"))
            if to.is_final:
                # steps that never finished end with the run: a step that was
                # running takes the run's status, one that never started is cancelled
                await conn.execute(
                    "UPDATE run_step SET status = CASE WHEN status = 3 THEN $2 ELSE 30 END,"
                    " finished_at = COALESCE(finished_at, now()), updated_at = now()"
                    " WHERE run_id = $1 AND status < 10",
                    run_id,
                    int(to),
                )
    return row


async def request_cancel(
    conn: asyncpg.Connection, run_id: int, reason: str
) -> asyncpg.Record | None:
    """Flag a starting/running run for cancellation (the worker stops it).

    Returns the row when the flag was set now; None if the run is not in
    flight or was already flagged.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE run SET cancel_requested_at = now(), cancel_reason = $2, updated_at = now() "
            "WHERE id = $1 AND status = ANY($3::smallint[]) AND cancel_requested_at IS NULL "
            f"RETURNING {_RETURNING}",
            run_id,
            reason,
            [int(S), int(R)],
        )
        if row is not None:
            await notify(conn, RunEvent.of(row, "cancel_requested"))
    return row


async def step_update(
    conn: asyncpg.Connection,
    run_id: int,
    index: int,
    status: RunStatus,
    *,
    message: str | None = None,
) -> bool:
    """Set a step's status (running, or a final one); False if the step is already final."""
    if status == RunStatus.RUNNING:
        stamp = "started_at = COALESCE(started_at, now())"
    elif status.is_final:
        stamp = "finished_at = now(), started_at = COALESCE(started_at, now())"
    else:
        stamp = "updated_at = now()"
    async with conn.transaction():
        row = await conn.fetchrow(
            f"UPDATE run_step SET status = $3, {stamp}, updated_at = now(),"
            " status_message = COALESCE($4, status_message)"
            " WHERE run_id = $1 AND index = $2 AND status < 10 RETURNING run_id",
            run_id,
            index,
            int(status),
            message,
        )
        if row is None:
            return False
        run = await conn.fetchrow(f"SELECT {_RETURNING} FROM run WHERE id = $1", run_id)
        await notify(conn, RunEvent.of(run, "step"))
    return True


async def steps_upsert(
    conn: asyncpg.Connection, run_id: int, account_id: int, steps: Sequence[dict[str, Any]]
) -> int:
    """Create or rename steps by index, and move their status; one event for the batch.

    Each entry is ``{"index", "name", "kind", "command", "status"?, "message"?}``.
    A step that is already final keeps its name and status (a retried call
    changes nothing). Status moves go through the same conditional update as
    :func:`step_update`. Returns how many steps changed.
    """
    changed = 0
    async with conn.transaction():
        for s in steps:
            row = await conn.fetchrow(
                "INSERT INTO run_step (account_id, run_id, index, name, kind, command, status,"
                " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, now(), now())"
                " ON CONFLICT (run_id, index) DO UPDATE SET name = EXCLUDED.name,"
                " kind = EXCLUDED.kind, command = EXCLUDED.command, updated_at = now()"
                " WHERE run_step.status < 10 RETURNING status",
                account_id,
                run_id,
                int(s["index"]),
                str(s["name"])[:500],
                str(s.get("kind") or "dbt")[:20],
                str(s.get("command") or ""),
            )
            if row is None:
                continue
            changed += 1
            status = RunStatus(int(s.get("status") or RunStatus.QUEUED))
            if status == RunStatus.QUEUED:
                continue
            if status == RunStatus.RUNNING:
                stamp = "started_at = COALESCE(started_at, now())"
            else:
                stamp = "finished_at = now(), started_at = COALESCE(started_at, now())"
            await conn.execute(
                f"UPDATE run_step SET status = $3, {stamp}, updated_at = now(),"
                " status_message = COALESCE($4, status_message)"
                " WHERE run_id = $1 AND index = $2 AND status < 10",
                run_id,
                int(s["index"]),
                int(status),
                (str(s["message"])[:10_000] if s.get("message") is not None else None),
            )
        if changed:
            run = await conn.fetchrow(f"SELECT {_RETURNING} FROM run WHERE id = $1", run_id)
            if run is not None:
                await notify(conn, RunEvent.of(run, "step"))
    return changed
