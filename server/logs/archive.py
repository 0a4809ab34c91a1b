"""Moving the lines of finished runs from ``log_line`` to the object store.

A pass (leader only, from the scheduler) takes runs finished more than
``KILN_LOG_ARCHIVE_AFTER`` ago whose lines are still in the table and, one
run at a time:

1. **write**: streams every row, in seq order, as gzipped JSON lines to
   ``logs/<account>/<run>.jsonl.gz`` (``put`` is atomic: the object is whole
   or absent), hashing the uncompressed bytes on the way;
2. **verify**: reads the object back and checks line count, last seq and hash;
3. **delete**: in one transaction, locks the run row, checks that the table
   still holds exactly the lines written, deletes them and sets
   ``run.logs_archived``.

A crash (or error) anywhere before step 3 commits leaves the rows and the
flag untouched: readers keep reading the table, and the next pass rewrites
the object and completes. A crash after it has nothing left to do. Lines are
never only in memory. Readers (:mod:`server.logs.read`) treat the flag and
the rows as one fact because they change in one transaction.

Runs without lines get the flag and no object. Retention
(:mod:`server.scheduler.cleanup`) deletes ``logs/<account>/<run>.*`` with
the run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.db import Database
from server.logs.read import _COLUMNS, LogLine, archive_key, decode_archive
from server.objectstore import ObjectStore

log = logging.getLogger("kiln.logs.archive")
CHUNK = 5_000  # rows per read while writing
BATCH = 50  # runs per pass


class ArchiveMismatch(Exception):
    """The object read back is not what was written, or the table changed meanwhile."""


@dataclass
class ArchivePass:
    runs: int = 0
    lines: int = 0
    bytes: int = 0
    failed: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Written:
    key: str | None
    lines: int
    last_seq: int
    sha256: str
    size: int


async def candidates(db: Database, cutoff: datetime, limit: int) -> list[tuple[int, int]]:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, account_id FROM run WHERE status >= 10 AND NOT logs_archived"
            " AND finished_at < $1 ORDER BY finished_at LIMIT $2",
            cutoff,
            limit,
        )
    return [(r["id"], r["account_id"]) for r in rows]


async def archive_pass(
    db: Database, store: ObjectStore, now: datetime, after_seconds: float, *, limit: int = BATCH
) -> ArchivePass:
    """Archive up to ``limit`` runs finished before ``now - after_seconds``."""
    started = time.monotonic()
    result = ArchivePass()
    for run_id, account_id in await candidates(db, now - timedelta(seconds=after_seconds), limit):
        try:
            w = await archive_run(db, store, run_id, account_id)
        except Exception:
            result.failed += 1
            log.exception("archiving logs failed", extra={"run_id": run_id})
            continue
        if w is not None:
            result.runs += 1
            result.lines += w.lines
            result.bytes += w.size
    result.seconds = time.monotonic() - started
    if result.runs or result.failed:
        log.info(
            "log archive pass",
            extra={"runs": result.runs, "lines": result.lines, "failed": result.failed},
        )
    return result


async def _rows(db: Database, run_id: int, account_id: int) -> AsyncIterator[list[LogLine]]:
    cursor = 0
    while True:
        async with db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM log_line WHERE run_id = $1 AND account_id = $2"
                " AND seq > $3 ORDER BY seq LIMIT $4",
                run_id,
                account_id,
                cursor,
                CHUNK,
            )
        if not rows:
            return
        lines = [LogLine.of(r) for r in rows]
        yield lines
        cursor = lines[-1].seq
        if len(rows) < CHUNK:
            return


async def write(db: Database, store: ObjectStore, run_id: int, account_id: int) -> Written:
    """Step 1: the object, from the rows as they are now."""
    key = archive_key(account_id, run_id)
    digest = hashlib.sha256()
    stats = {"lines": 0, "last": 0}
    buf = io.BytesIO()
    gz = gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0)

    async def chunks() -> AsyncIterator[bytes]:
        async for lines in _rows(db, run_id, account_id):
            data = "".join(
                json.dumps(ln.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
                for ln in lines
            ).encode("utf-8")
            digest.update(data)
            gz.write(data)
            stats["lines"] += len(lines)
            stats["last"] = lines[-1].seq
            out = buf.getvalue()
            buf.seek(0)
            buf.truncate()
            if out:
                yield out
        gz.close()
        yield buf.getvalue()

    # peek: a run without lines gets no object
    async with db.acquire() as conn:
        any_rows = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM log_line WHERE run_id = $1 AND account_id = $2)",
            run_id,
            account_id,
        )
    if not any_rows:
        return Written(None, 0, 0, digest.hexdigest(), 0)
    info = await store.put(key, chunks())
    return Written(key, stats["lines"], stats["last"], digest.hexdigest(), info.size)


async def verify(store: ObjectStore, w: Written) -> None:
    """Step 2: the stored object decodes to exactly what was written."""
    if w.key is None:
        return
    data = await store.read(w.key)
    raw = gzip.decompress(data)
    if hashlib.sha256(raw).hexdigest() != w.sha256:
        raise ArchiveMismatch(f"{w.key}: content differs from what was written")
    lines = decode_archive(data)
    if len(lines) != w.lines or (lines and lines[-1].seq != w.last_seq):
        raise ArchiveMismatch(f"{w.key}: {len(lines)} lines read back, {w.lines} written")


async def commit(db: Database, run_id: int, w: Written) -> bool:
    """Step 3: delete the rows and set the flag, in one transaction; False if already done."""
    async with db.acquire() as conn, conn.transaction():
        locked = await conn.fetchval(
            "SELECT id FROM run WHERE id = $1 AND NOT logs_archived FOR UPDATE", run_id
        )
        if locked is None:
            return False
        n, last = await conn.fetchrow(
            "SELECT count(*), COALESCE(max(seq), 0) FROM log_line WHERE run_id = $1", run_id
        )
        if n != w.lines or last != w.last_seq:
            raise ArchiveMismatch(
                f"run {run_id}: table has {n} lines (last {last}), archive {w.lines}"
            )
        await conn.execute("DELETE FROM log_line WHERE run_id = $1", run_id)
        await conn.execute(
            "UPDATE run SET logs_archived = true WHERE id = $1", run_id
        )
    return True


async def archive_run(
    db: Database, store: ObjectStore, run_id: int, account_id: int
) -> Written | None:
    """Write, verify, then delete one run's lines; None when another archiver finished first."""
    w = await write(db, store, run_id, account_id)
    await verify(store, w)
    return w if await commit(db, run_id, w) else None
