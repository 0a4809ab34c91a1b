"""Webhook deliveries: run events become rows, rows become signed POSTs with retries.

Two halves, both safe to run in every scheduler process at once:

* :func:`record_run` writes one ``webhook_delivery`` row per (subscription,
  event) of a run, computed from the run's stored state (started, final,
  errored). ``INSERT ... ON CONFLICT (webhook_id, event_id) DO NOTHING`` with
  deterministic event ids makes it idempotent: two schedulers, a NOTIFY and
  the catch-up scan, or a restart all end with one row per event.
* :class:`Deliverer` claims due rows with ``FOR UPDATE SKIP LOCKED`` and
  leases them (``next_attempt_at`` moves ``LEASE`` seconds ahead and
  ``attempts`` is counted) before sending, so no transaction stays open
  during the HTTP call and a process that dies mid-send leaves a row that
  another picks up when the lease ends. A delivery is at least once: a
  crash between the receiver's answer and the row's update sends it again
  (receivers can dedupe on ``eventId``); a clean stop finishes what it sent.

A POST answered 2xx within ``timeout`` (10 s) is delivered; anything else
(non-2xx, redirect, timeout, connection error) is retried after
``backoff * 2**(n-1)`` seconds, at most ``retries`` (5) times, then the row
is ``failed``. Rows of inactive subscriptions wait until they are active.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg

from server import crypto
from server.db import Database
from server.webhooks import payloads

log = logging.getLogger("kiln.webhooks")

TIMEOUT = 10.0
RETRIES = 5
BACKOFF = 10.0
LEASE = 60.0  # > TIMEOUT: a lease outlives any one attempt
BATCH = 50
CONCURRENCY = 10
MAX_RESPONSE = 64 * 1024
USER_AGENT = "Kiln-Webhooks/1"

_RUN = """
SELECT r.id, r.account_id, r.job_id, r.project_id, r.environment_id, r.status,
       r.status_message, r.cause, r.started_at, r.finished_at,
       j.name AS job_name, e.name AS environment_name, e.dbt_version, p.name AS project_name
FROM run r JOIN job j ON j.id = r.job_id JOIN environment e ON e.id = r.environment_id
     JOIN project p ON p.id = r.project_id
WHERE r.id = $1
"""

_HOOKS = """
SELECT id, name, event_types, job_ids, created_at FROM webhook
WHERE account_id = $1 AND active
"""

_INSERT = """
INSERT INTO webhook_delivery (account_id, webhook_id, event_id, event_type, run_id, payload,
                              status, attempts, next_attempt_at, created_at)
SELECT $1, w, e, t, $2, p, 'pending', 0, now(), now()
FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[]) AS x(w, e, t, p)
ON CONFLICT (webhook_id, event_id) DO NOTHING
RETURNING id
"""


def _json_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return list(value or [])


async def record_run(conn: asyncpg.Connection, run_id: int) -> int:
    """Create the missing delivery rows for the events ``run_id`` has produced; how many.

    A subscription gets an event only if it existed when the event happened
    (a new subscription is not sent the past).
    """
    run = await conn.fetchrow(_RUN, run_id)
    if run is None:
        return 0
    events = payloads.events_for_run(run["status"], run["started_at"], run["finished_at"])
    if not events:
        return 0
    hooks = await conn.fetch(_HOOKS, run["account_id"])
    rows: list[tuple[int, str, str, str]] = []
    for hook in hooks:
        types = set(_json_list(hook["event_types"]))
        jobs = {int(j) for j in _json_list(hook["job_ids"])}
        if jobs and run["job_id"] not in jobs:
            continue
        for event_type, at in events:
            if event_type not in types or hook["created_at"] > at:
                continue
            body = payloads.build(
                event_type, webhook_id=hook["id"], webhook_name=hook["name"], run=run, at=at
            )
            rows.append((hook["id"], payloads.event_id(run_id, event_type), event_type, body))
    if not rows:
        return 0
    created = await conn.fetch(
        _INSERT,
        run["account_id"],
        run_id,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )
    return len(created)


async def record_runs(db: Database, run_ids: Iterable[int]) -> int:
    created = 0
    async with db.acquire() as conn:
        for run_id in run_ids:
            created += await record_run(conn, run_id)
    return created


async def scan(db: Database, since: datetime, *, limit: int = 2000) -> int:
    """Record events of runs that started or finished after ``since`` (NOTIFYs missed
    while no scheduler listened); only accounts with an active subscription are read."""
    async with db.acquire() as conn:
        ids = await conn.fetch(
            """SELECT r.id FROM run r
               WHERE r.account_id IN (SELECT account_id FROM webhook WHERE active)
                 AND r.created_at > $1::timestamptz - interval '7 days'
                 AND (r.started_at > $1::timestamptz OR r.finished_at > $1::timestamptz)
               ORDER BY r.id LIMIT $2""",
            since,
            limit,
        )
    return await record_runs(db, [r["id"] for r in ids])


# ---------------------------------------------------------------- sending


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one POST."""

    ok: bool
    status_code: int | None
    error: str | None


async def send(
    session: aiohttp.ClientSession, url: str, body: str, secret: str, *, timeout: float = TIMEOUT
) -> Attempt:
    """POST ``body`` signed with ``secret``; never raises for the receiver's faults."""
    raw = body.encode()
    headers = {
        "Content-Type": "application/json",
        "Authorization": payloads.sign(secret, raw),
        "User-Agent": USER_AGENT,
    }
    try:
        async with session.post(
            url,
            data=raw,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as resp:
            await resp.content.read(MAX_RESPONSE)
            if 200 <= resp.status < 300:
                return Attempt(True, resp.status, None)
            return Attempt(False, resp.status, f"HTTP {resp.status} {resp.reason or ''}".strip())
    except TimeoutError:
        return Attempt(False, None, f"no answer within {timeout:g} s")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}"[:1000])


_CLAIM = """
WITH due AS (
    SELECT d.id FROM webhook_delivery d JOIN webhook w ON w.id = d.webhook_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND w.active
    ORDER BY d.next_attempt_at, d.id
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_delivery d
SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
FROM due, webhook w
WHERE d.id = due.id AND w.id = d.webhook_id
RETURNING d.id, d.webhook_id, d.run_id, d.payload, d.attempts, w.url, w.secret
"""


class Deliverer:
    """Sends due deliveries; one per scheduler process (see :mod:`server.webhooks.tasks`)."""

    def __init__(
        self,
        db: Database,
        vault: crypto.Vault,
        *,
        timeout: float = TIMEOUT,
        retries: int = RETRIES,
        backoff: float = BACKOFF,
        lease: float = LEASE,
        batch: int = BATCH,
    ) -> None:
        self.db = db
        self.vault = vault
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.lease = max(lease, timeout + 5)
        self.batch = batch
        self._session: aiohttp.ClientSession | None = None
        self._sem = asyncio.Semaphore(CONCURRENCY)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def delay(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed ones."""
        return self.backoff * 2 ** max(attempts - 1, 0)

    async def run_once(self) -> int:
        """Deliver everything that is due now; returns how many attempts were made."""
        total = 0
        while True:
            async with self.db.acquire() as conn:
                rows = await conn.fetch(_CLAIM, self.batch, self.lease)
            if not rows:
                return total
            # one receiver sees one run's events in order: a group is sent sequentially
            groups: dict[tuple[int, int | None], list[asyncpg.Record]] = defaultdict(list)
            for r in sorted(rows, key=lambda r: r["id"]):
                groups[(r["webhook_id"], r["run_id"])].append(r)
            await asyncio.gather(*(self._group(g) for g in groups.values()))
            total += len(rows)
            if len(rows) < self.batch:
                return total

    async def _group(self, rows: list[asyncpg.Record]) -> None:
        async with self._sem:
            for r in rows:
                await self._one(r)

    async def _one(self, row: asyncpg.Record) -> None:
        try:
            secret = self.vault.decrypt(row["secret"])
        except crypto.SecretKeyError as exc:
            await self._record(row, Attempt(False, None, str(exc)))
            return
        attempt = await send(
            self.session(), row["url"], row["payload"], secret, timeout=self.timeout
        )
        await self._record(row, attempt)

    async def _record(self, row: asyncpg.Record, attempt: Attempt) -> None:
        attempts = row["attempts"]
        async with self.db.acquire() as conn:
            if attempt.ok:
                await conn.execute(
                    "UPDATE webhook_delivery SET status = 'delivered', delivered_at = now(),"
                    " last_status_code = $2, last_error = NULL, next_attempt_at = NULL"
                    " WHERE id = $1 AND attempts = $3 AND status = 'pending'",
                    row["id"],
                    attempt.status_code,
                    attempts,
                )
                return
            final = attempts > self.retries
            await conn.execute(
                "UPDATE webhook_delivery SET last_status_code = $2, last_error = $3,"
                " status = CASE WHEN $4 THEN 'failed' ELSE 'pending' END,"
                " next_attempt_at = CASE WHEN $4 THEN NULL"
                "   ELSE now() + make_interval(secs => $5) END"
                " WHERE id = $1 AND attempts = $6 AND status = 'pending'",
                row["id"],
                attempt.status_code,
                attempt.error,
                final,
                self.delay(attempts),
                attempts,
            )
        log.warning(
            "webhook delivery failed",
            extra={
                "delivery_id": row["id"],
                "attempt": attempts,
                "final": final,
                "error": attempt.error,
            },
        )
