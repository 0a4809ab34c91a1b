"""Appending a batch of a run's log lines: one statement, idempotent, then one NOTIFY.

Contract (the fan-out hub and the archive build on it):

* Lines are keyed by ``(run_id, seq)``; ``seq`` is assigned by the worker,
  1-based and gap-free within a run. A retried batch inserts nothing twice
  (``ON CONFLICT DO NOTHING``), so the worker can resend after any network
  error without doubling a line.
* One SQL statement inserts the batch, raises ``run.log_seq`` to the highest
  seq stored and, only when something was inserted, sends ``NOTIFY run_logs,
  '<run>:<last_seq>'``. Listeners therefore never hear of a line that is not
  committed, and ``run.log_seq`` is always the high-water mark they can read to.
* In-process listeners (:func:`on_appended`) hear of a batch right after its
  statement committed (never inside a caller's transaction), with the lines
  exactly as stored: the fan-out hub of the same process skips the NOTIFY
  round trip and the re-read. Other processes still rely on the NOTIFY.
* Messages are masked again here (defence in depth, see
  :mod:`server.runs.masking`) and bounded in size; levels are normalised to
  ``debug | info | warn | error``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

log = logging.getLogger("kiln.logs.ingest")
CHANNEL = "run_logs"
MAX_BATCH = 5_000  # lines per call
MAX_MESSAGE = 64 * 1024  # characters per line
LEVELS = {"debug": "debug", "info": "info", "warn": "warn", "warning": "warn", "error": "error"}


# (run_id, account_id, [(seq, step, ts, level, message, event_name, node_id), ...]) as stored
Appended = Callable[[int, int, list[tuple[Any, ...]]], None]
_listeners: list[Appended] = []


def on_appended(listener: Appended) -> Callable[[], None]:
    """Call ``listener`` after every committed batch of this process; returns the remover."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


class InvalidBatch(ValueError):
    """The batch is malformed; nothing was stored."""


@dataclass(frozen=True, slots=True)
class LogLineIn:
    seq: int
    step: int | None
    ts: datetime
    level: str
    message: str
    event_name: str | None = None
    node_id: str | None = None


def _ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    raise InvalidBatch(f"bad ts {value!r}")


def parse_batch(items: Any) -> list[LogLineIn]:
    """Validate a JSON batch ``[{seq, step, ts, level, message, eventName, nodeId}]``."""
    if not isinstance(items, list) or len(items) > MAX_BATCH:
        raise InvalidBatch(f"lines must be a list of at most {MAX_BATCH} items")
    out: list[LogLineIn] = []
    for it in items:
        if not isinstance(it, dict):
            raise InvalidBatch("each line must be an object")
        seq, step = it.get("seq"), it.get("step")
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq < 2**31:
            raise InvalidBatch(f"bad seq {seq!r}")
        if step is not None and (not isinstance(step, int) or not 0 <= step < 10_000):
            raise InvalidBatch(f"bad step {step!r}")
        try:
            ts = _ts(it.get("ts"))
        except ValueError as exc:
            raise InvalidBatch(f"bad ts in line {seq}: {exc}") from None
        event, node = it.get("eventName"), it.get("nodeId")
        out.append(
            LogLineIn(
                seq=seq,
                step=step,
                ts=ts,
                level=LEVELS.get(str(it.get("level") or "info").lower(), "info"),
                message=str(it.get("message") or ""),
                event_name=str(event)[:100] if event else None,
                node_id=str(node)[:500] if node else None,
            )
        )
    return out


_SQL = f"""
WITH ins AS (
    INSERT INTO log_line (run_id, seq, account_id, step_index, ts, level, message,
                          event_name, node_id)
    SELECT $1, u.seq, $2, u.step, u.ts, u.level, u.message, u.event_name, u.node_id
    FROM unnest($3::int[], $4::int[], $5::timestamptz[], $6::text[], $7::text[],
                $8::text[], $9::text[])
         AS u(seq, step, ts, level, message, event_name, node_id)
    ON CONFLICT (run_id, seq) DO NOTHING
    RETURNING seq
), top AS (
    SELECT max(seq) AS seq FROM ins
), upd AS (
    UPDATE run SET log_seq = GREATEST(run.log_seq, top.seq)
    FROM top WHERE run.id = $1 AND top.seq IS NOT NULL
    RETURNING run.log_seq
)
SELECT log_seq, pg_notify('{CHANNEL}', $1::text || ':' || log_seq::text) FROM upd
"""


async def append(
    conn: asyncpg.Connection,
    run_id: int,
    account_id: int,
    lines: Sequence[LogLineIn],
    *,
    mask: Callable[[str], str] | None = None,
) -> int | None:
    """Store ``lines``; return the run's new ``log_seq``, or None if every line was known."""
    if not lines:
        return None
    m = mask or (lambda s: s)
    messages = [m(ln.message[:MAX_MESSAGE]).replace("\x00", "") for ln in lines]
    nodes = [m(ln.node_id) if ln.node_id else None for ln in lines]
    row = await conn.fetchrow(
        _SQL,
        run_id,
        account_id,
        [ln.seq for ln in lines],
        [ln.step for ln in lines],
        [ln.ts for ln in lines],
        [ln.level for ln in lines],
        messages,
        [ln.event_name for ln in lines],
        nodes,
    )
    if row is None:
        return None
    if _listeners and not conn.is_in_transaction():
        stored = [
            (ln.seq, ln.step, ln.ts.astimezone(UTC), ln.level, msg, ln.event_name, node)
            for ln, msg, node in zip(lines, messages, nodes, strict=True)
        ]
        for listener in list(_listeners):
            try:
                listener(run_id, account_id, stored)
            except Exception:
                log.exception("log append listener failed")
    return row["log_seq"]
