"""Reading a run's log lines, from the table or from its archive, transparently.

A run's lines live in ``log_line`` while the run is young; the archiver
(:mod:`server.logs.archive`) writes them to ``logs/<account>/<run>.jsonl.gz``
and then, in ONE transaction, deletes the rows and sets ``run.logs_archived``.
So a reader never finds a run's lines in neither place:

* it reads rows first (one statement, one snapshot: all of the run's rows or
  none of them), and
* only when that found nothing does it look at ``run.logs_archived``; the flag
  was committed together with the delete, so rows gone means flag set, and
  the archive (a superset of any rows it could have seen) is read instead.

Every function takes the account id as well as the run id and filters by
both: authorization happens before (:func:`authorize_run`), this is the
second lock on the door.

Decoded archives are kept in a small LRU (bounded by lines, not runs) so 200
viewers replaying one archived run fetch and decompress it once.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.db import Database
from server.models import RunStatus
from server.objectstore import ObjectNotFound, ObjectStore
from server.services.actor import Actor
from server.services.errors import NotFound, ValidationFailed
from server.services.permissions import Action

log = logging.getLogger("kiln.logs")

LEVELS = ("debug", "info", "warn", "error")
MAX_PAGE = 500
_COLUMNS = "seq, step_index, ts, level, message, event_name, node_id"


def archive_key(account_id: int, run_id: int) -> str:
    return f"logs/{account_id}/{run_id}.jsonl.gz"


@dataclass(frozen=True, slots=True)
class LogLine:
    """One stored line. Immutable: the same object is handed to every subscriber."""

    seq: int
    step: int | None
    ts: datetime
    level: str
    message: str
    event_name: str | None = None
    node_id: str | None = None

    @classmethod
    def of(cls, r: Any) -> LogLine:
        return cls(r[0], r[1], r[2], r[3], r[4], r[5], r[6])

    def to_json(self) -> dict[str, Any]:
        """The archive's line format (the same names as the API)."""
        return {
            "seq": self.seq,
            "step": self.step,
            "ts": self.ts.isoformat(),
            "level": self.level,
            "message": self.message,
            "eventName": self.event_name,
            "nodeId": self.node_id,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LogLine:
        return cls(
            int(d["seq"]),
            d.get("step"),
            datetime.fromisoformat(d["ts"]),
            d.get("level") or "info",
            d.get("message") or "",
            d.get("eventName"),
            d.get("nodeId"),
        )

    def as_text(self) -> str:
        """One line of the plain-text download."""
        return f"{self.ts.isoformat(timespec='milliseconds')} [{self.level:<5}] {self.message}"


@dataclass(frozen=True, slots=True)
class RunLogInfo:
    """What a reader needs to know about a run: where its lines are, whether more can come."""

    id: int
    account_id: int
    status: int
    log_seq: int
    logs_archived: bool

    @property
    def finished(self) -> bool:
        return self.status >= RunStatus.SUCCESS


@dataclass(frozen=True, slots=True)
class LogPage:
    lines: list[LogLine]
    has_next: bool
    has_previous: bool


def levels_from(level: str | None) -> tuple[str, ...] | None:
    """``level`` is a minimum severity: ``warn`` means warn and error."""
    if level is None:
        return None
    lv = level.lower()
    if lv == "warning":
        lv = "warn"
    if lv not in LEVELS:
        raise ValidationFailed(f"level must be one of {', '.join(LEVELS)}", field="level")
    return LEVELS[LEVELS.index(lv) :]


async def authorize_run(db: Database, actor: Actor, run_id: int) -> RunLogInfo:
    """The run if ``actor`` may read it; NotFound when it is missing or another account's."""
    actor.require(Action.READ)
    async with db.acquire() as conn:
        r = await conn.fetchrow(
            "SELECT id, account_id, status, log_seq, logs_archived FROM run"
            " WHERE id = $1 AND account_id = $2",
            run_id,
            actor.account_id,
        )
    if r is None:
        raise NotFound("run not found")
    return RunLogInfo(*r)


async def check_visible(db: Database, actor: Actor, kind: str, pk: int, what: str) -> None:
    """NotFound unless ``actor`` may read object ``pk`` of ``kind``: the very rules of the
    scoped queries (READ, the account, not deleted, per-role visibility)."""
    from server.services import queries

    actor.require(Action.READ)
    if not await queries.visible(actor, db, kind, pk):
        raise NotFound(f"{what} not found")


class LogReader:
    """Reads lines of one process; one per platform (see :func:`log_reader`)."""

    def __init__(self, db: Database, store: ObjectStore, *, cache_lines: int = 500_000) -> None:
        self.db = db
        self.store = store
        self.cache_lines = cache_lines
        self._cache: OrderedDict[int, tuple[LogLine, ...]] = OrderedDict()
        self._cached = 0
        self._loading: dict[int, asyncio.Future[tuple[LogLine, ...]]] = {}

    async def info(self, run_id: int, account_id: int) -> RunLogInfo | None:
        async with self.db.acquire() as conn:
            r = await conn.fetchrow(
                "SELECT id, account_id, status, log_seq, logs_archived FROM run"
                " WHERE id = $1 AND account_id = $2",
                run_id,
                account_id,
            )
        return RunLogInfo(*r) if r is not None else None

    async def after(
        self, run_id: int, account_id: int, after: int, limit: int
    ) -> list[LogLine]:
        """Up to ``limit`` lines with ``seq > after`` in seq order, wherever they are."""
        async with self.db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM log_line WHERE run_id = $1 AND account_id = $2"
                " AND seq > $3 ORDER BY seq LIMIT $4",
                run_id,
                account_id,
                after,
                limit,
            )
            if rows:
                return [LogLine.of(r) for r in rows]
            archived = await conn.fetchval(
                "SELECT logs_archived FROM run WHERE id = $1 AND account_id = $2",
                run_id,
                account_id,
            )
        if not archived:
            return []
        lines = await self.archived(run_id, account_id)
        start = _first_after(lines, after)
        return list(lines[start : start + limit])

    async def page(
        self,
        run_id: int,
        account_id: int,
        *,
        first: int,
        after: int = 0,
        step: int | None = None,
        level: str | None = None,
    ) -> LogPage:
        """A page for the ``run.logs`` connection: lines after seq ``after``, filtered."""
        if not 0 <= first <= MAX_PAGE:
            raise ValidationFailed(f"first must be between 0 and {MAX_PAGE}", field="first")
        levels = levels_from(level)
        conds = ["run_id = $1", "account_id = $2", "seq > $3"]
        args: list[Any] = [run_id, account_id, after]
        if step is not None:
            args.append(step)
            conds.append(f"step_index = ${len(args)}")
        if levels is not None:
            args.append(list(levels))
            conds.append(f"level = ANY(${len(args)}::text[])")
        args.append(first + 1)
        async with self.db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM log_line WHERE {' AND '.join(conds)}"
                f" ORDER BY seq LIMIT ${len(args)}",
                *args,
            )
            archived = False
            if not rows:
                archived = await conn.fetchval(
                    "SELECT logs_archived FROM run WHERE id = $1 AND account_id = $2",
                    run_id,
                    account_id,
                )
        if archived:
            found = [
                ln
                for ln in _slice_after(await self.archived(run_id, account_id), after)
                if _matches(ln, step, levels)
            ][: first + 1]
        else:
            found = [LogLine.of(r) for r in rows]
        return LogPage(found[:first], len(found) > first, after > 0)

    async def count(
        self, run_id: int, account_id: int, *, step: int | None = None, level: str | None = None
    ) -> int:
        """How many lines match the filters (the connection's ``totalCount``)."""
        levels = levels_from(level)
        info = await self.info(run_id, account_id)
        if info is None:
            return 0
        if info.logs_archived:
            lines = await self.archived(run_id, account_id)
            return sum(1 for ln in lines if _matches(ln, step, levels))
        conds = ["run_id = $1", "account_id = $2"]
        args: list[Any] = [run_id, account_id]
        if step is not None:
            args.append(step)
            conds.append(f"step_index = ${len(args)}")
        if levels is not None:
            args.append(list(levels))
            conds.append(f"level = ANY(${len(args)}::text[])")
        async with self.db.acquire() as conn:
            n = await conn.fetchval(
                f"SELECT count(*) FROM log_line WHERE {' AND '.join(conds)}", *args
            )
        return int(n)

    async def iter_all(
        self, run_id: int, account_id: int, *, chunk: int = 5_000
    ) -> AsyncIterator[list[LogLine]]:
        """Every line of the run in seq order, in chunks (downloads, the archiver)."""
        cursor = 0
        while True:
            lines = await self.after(run_id, account_id, cursor, chunk)
            if not lines:
                return
            yield lines
            cursor = lines[-1].seq
            if len(lines) < chunk:
                return

    # -- archives ------------------------------------------------------------
    async def archived(self, run_id: int, account_id: int) -> tuple[LogLine, ...]:
        """Every line of an archived run (cached; concurrent callers share one fetch)."""
        hit = self._cache.get(run_id)
        if hit is not None:
            self._cache.move_to_end(run_id)
            return hit
        pending = self._loading.get(run_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[tuple[LogLine, ...]] = asyncio.get_running_loop().create_future()
        self._loading[run_id] = fut
        try:
            lines = await self._fetch_archive(run_id, account_id)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise it, nobody else logs it
            raise
        finally:
            self._loading.pop(run_id, None)
        fut.set_result(lines)
        self._remember(run_id, lines)
        return lines

    async def _fetch_archive(self, run_id: int, account_id: int) -> tuple[LogLine, ...]:
        key = archive_key(account_id, run_id)
        try:
            data = await self.store.read(key)
        except ObjectNotFound:
            # a run archived with no lines has no object
            info = await self.info(run_id, account_id)
            if info is not None and info.log_seq > 0:
                log.error("archived log object missing", extra={"run_id": run_id, "key": key})
            return ()
        return decode_archive(data)

    def _remember(self, run_id: int, lines: tuple[LogLine, ...]) -> None:
        if len(lines) > self.cache_lines:
            return
        self._cache[run_id] = lines
        self._cached += len(lines)
        while self._cached > self.cache_lines and self._cache:
            _, old = self._cache.popitem(last=False)
            self._cached -= len(old)

    def forget(self, run_id: int) -> None:
        old = self._cache.pop(run_id, None)
        if old is not None:
            self._cached -= len(old)


def decode_archive(data: bytes) -> tuple[LogLine, ...]:
    text = gzip.decompress(data).decode("utf-8")
    return tuple(LogLine.from_json(json.loads(s)) for s in text.splitlines() if s)


def _first_after(lines: Sequence[LogLine], after: int) -> int:
    lo, hi = 0, len(lines)
    while lo < hi:
        mid = (lo + hi) // 2
        if lines[mid].seq <= after:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _slice_after(lines: Sequence[LogLine], after: int) -> Sequence[LogLine]:
    return lines[_first_after(lines, after) :]


def _matches(ln: LogLine, step: int | None, levels: tuple[str, ...] | None) -> bool:
    return (step is None or ln.step == step) and (levels is None or ln.level in levels)


def log_reader(platform: Any) -> LogReader:
    """The process's reader (its archive cache is shared by every read path)."""
    reader = platform.services.get("log_reader")
    if reader is None:
        reader = LogReader(platform.db, platform.store)
        platform.services["log_reader"] = reader
    return reader
