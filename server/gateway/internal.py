"""/internal/runs/{id}/...: the API the run worker talks to with its run-scoped token.

Authorization: ``Authorization: Bearer <run token>``. The token's SHA-256 is
stored on the run by the dispatcher when it marks the run starting and
cleared by the state machine when the run ends, so every handler checks
``run.id = <path id> AND run.worker_token_hash = hash(token)`` in SQL: a
token of run A used on run B, a token of a finished run, or no token all get
404 (nothing tells a caller whether run B exists).

Routes (JSON unless noted):

=======  ======================================  =========================================
GET      spec                                    the run spec with decrypted secrets
POST     start                                   starting → running; ``{cancel, reason}``
POST     heartbeat[?wait=S]                      ``{cancel, reason, waited}``: long-polls
POST     checkout ``{git_sha, git_branch}``      record what was checked out
POST     steps ``{steps: [...]}``                upsert steps by index (name, status, message)
POST     logs ``{lines: [...]}``                 append a batch (idempotent by seq)
PUT      artifacts/{step}/{path}                 raw body streamed to the object store
GET      previous-artifacts/{step}/{path}        an artifact of the run this one retries
POST     finish ``{status, message}``            success | error | cancelled
=======  ======================================  =========================================

Cancellation reaches the worker through its heartbeat: with ``?wait=S`` the
call is held up to S seconds and answered as soon as the run is flagged
(``NOTIFY run_events`` kind ``cancel_requested``), so a cancel is a push in
effect, at one request per heartbeat interval.

The artifact download route for users (``server.gateway.artifacts``) is
mounted from here too, because the app composes areas through this hook.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from server import crypto
from server.gateway.app import PLATFORM
from server.logs import ingest
from server.models import Run, RunStatus
from server.objectstore import ObjectNotFound
from server.runs import spec as run_spec
from server.runs import state
from server.runs.masking import Masker
from server.services import artifacts
from server.services.errors import ValidationFailed

log = logging.getLogger("kiln.internal")

MAX_ARTIFACT_BYTES = 1024 * 1024 * 1024
MASKER_TTL = 30.0
MASKERS = web.AppKey("run_maskers", dict)
MAX_HEARTBEAT_WAIT = 30.0

_COLUMNS = (
    "id, account_id, job_id, project_id, environment_id, status, previous_run_id,"
    " cancel_requested_at, cancel_reason"
)

Handler = Callable[[web.Request, asyncpg.Record], Awaitable[web.StreamResponse]]


def _not_found() -> web.Response:
    return web.json_response({"error": "not found"}, status=404)


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip() or len(value) > 200:
        return None
    return value.strip()


def authorized(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Resolve the run from the path and the token; 404 unless they belong together."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        token = _bearer(request)
        try:
            run_id = int(request.match_info["run_id"])
        except ValueError:
            return _not_found()
        if token is None or not 0 < run_id < 2**63:
            return _not_found()
        platform = request.app[PLATFORM]
        async with platform.db.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM run WHERE id = $1 AND worker_token_hash = $2",
                run_id,
                crypto.hash_token(token),
            )
        if row is None:
            return _not_found()
        try:
            return await handler(request, row)
        except (ValidationFailed, ingest.InvalidBatch, ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except Exception:
            log.exception(
                "internal API error",
                extra={
                    "run_id": row["id"],
                    "job_id": row["job_id"],
                    "account_id": row["account_id"],
                    "path": request.path,
                },
            )
            raise

    return wrapper


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        doc = await request.json()
    except json.JSONDecodeError:
        raise ValueError("body is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("body must be a JSON object")
    return doc


def _cancel(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "cancel": row["cancel_requested_at"] is not None,
        "reason": row["cancel_reason"],
    }


@authorized
async def get_spec(request: web.Request, row: asyncpg.Record) -> web.StreamResponse:
    platform = request.app[PLATFORM]
    run = await Run.get(id=row["id"])
    doc = await run_spec.build_spec(
        platform.vault, run, heartbeat_interval=platform.settings.heartbeat_interval
    )
    return web.json_response(doc, headers={"Cache-Control": "no-store"})


@authorized
async def post_start(request: web.Request, row: asyncpg.Record) -> web.StreamResponse:
    async with request.app[PLATFORM].db.acquire() as conn:
        moved = await state.transition(
            conn, row["id"], RunStatus.RUNNING, expected=(RunStatus.STARTING,)
        )
    status = moved["status"] if moved is not None else row["status"]
    return web.json_response({"status": int(status), **_cancel(row)})


class CancelHub:
    """Wakes long-polling heartbeats when their run is flagged for cancellation.

    It rides on the process's shared LISTEN connection
    (``platform.services["events"]``, kind ``cancel_requested``); without one,
    heartbeats answer at once and the worker simply polls.
    """

    def __init__(self) -> None:
        self._waiters: dict[int, set[asyncio.Future[None]]] = {}
        self._subscribed = False

    def available(self, platform: Any) -> bool:
        events = platform.services.get("events")
        if events is None:
            return False
        if not self._subscribed:
            events.subscribe(state.CHANNEL, self._on_event)
            self._subscribed = True
        return True

    def _on_event(self, payload: str) -> None:
        try:
            ev = state.RunEvent.parse(payload)
        except (ValueError, TypeError):
            return
        if ev.kind == "cancel_requested" or ev.status >= RunStatus.SUCCESS:
            for fut in self._waiters.pop(ev.run, ()):
                if not fut.done():
                    fut.set_result(None)

    async def wait(self, run_id: int, timeout: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(run_id, set()).add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(run_id)
            if waiters is not None:
                waiters.discard(fut)
                if not waiters:
                    self._waiters.pop(run_id, None)


async def _beat(request: web.Request, run_id: int) -> asyncpg.Record | None:
    async with request.app[PLATFORM].db.acquire() as conn:
        return await conn.fetchrow(
            "UPDATE run SET heartbeat_at = now() WHERE id = $1 AND status < 10"
            " RETURNING cancel_requested_at, cancel_reason",
            run_id,
        )


@authorized
async def post_heartbeat(request: web.Request, row: asyncpg.Record) -> web.StreamResponse:
    """Record a heartbeat; with ``?wait=S`` answer early if a cancel arrives within S seconds.

    ``waited`` in the answer tells the worker whether the call long-polled
    (then it calls again at once) or not (then it sleeps its interval).
    """
    hb = await _beat(request, row["id"])
    if hb is None or hb["cancel_requested_at"] is not None:
        return web.json_response({**_cancel(hb or row), "waited": False})
    try:
        wait = min(float(request.query.get("wait", "0")), MAX_HEARTBEAT_WAIT)
    except ValueError:
        wait = 0.0
    hub = request.app[CANCEL_HUB]
    if wait <= 0 or not hub.available(request.app[PLATFORM]):
        return web.json_response({**_cancel(hb), "waited": False})
    await hub.wait(row["id"], wait)
    async with request.app[PLATFORM].db.acquire() as conn:
        now = await conn.fetchrow(
            "SELECT cancel_requested_at, cancel_reason FROM run WHERE id = $1", row["id"]
        )
    return web.json_response({**_cancel(now or hb), "waited": True})


@authorized
async def post_checkout(request: web.Request, row: asyncpg.Record) -> web.StreamResponse:
    doc = await _body(request)
    sha, branch = doc.get("git_sha"), doc.get("git_branch")
    if sha is not None and (not isinstance(sha, str) or len(sha) > 64):
        raise ValueError("bad git_sha")
    if branch is not None and (not isinstance(branch, str) or len(branch) > 200):
        raise ValueError("bad git_branch")
    async with request.app[PLATFORM].db.acquire() as conn:
        await conn.execute(
            "UPDATE run SET git_sha = COALESCE($2, git_sha), git_branch = COALESCE($3, git_branch),"
            " updated_at = now() WHERE id = $1",
            row["id"],
            sha,
            branch,
        )
    return web.json_response({"ok": True})


@authorized
async def post_steps(request: web.Request, row: asyncpg.Record) -> web.StreamResponse:
    doc = await _body(request)
    steps = doc.get("steps")
    if not isinstance(steps, list) or not 0 < len(steps) <= 100:
        raise ValueError("steps must be a non-empty list")
    for s in steps:
        if not isinstance(s, dict) or not isinstance(s.get("index"), int):
            raise ValueError("each step needs an integer index")
        if not 0 < s["index"] < 1000 or not isinstance(s.get("name"), str):
            raise ValueError("bad step index or name")
        RunStatus(int(s.get("status") or 1))
    async with request.app[PLATFORM].db.acquire() as conn:
        changed = await state.steps_upsert(conn, row["id"], row["account_id"], steps)
    return web.json_response({"changed": changed})


async def _masker(app: web.Application, run_id: int) -> Masker:
    cache: dict[int, tuple[float, Masker]] = app[MASKERS]
    hit = cache.get(run_id)
    now = time.monotonic()
    if hit is not None and now - hit[0] < MASKER_TTL:
        return hit[1]
    run = await Run.get(id=run_id)
    masker = Masker(await run_spec.secret_values(app[PLATFORM].vault, run))
    if len(cache) > 1000:
        cache.clear()
    cache[run_id] = (now, masker)
    return masker


@authorized
async def post_logs(request: web.Request, row: asyncpg.Record) -> web.StreamResponse:
    doc = await _body(request)
    lines = ingest.parse_batch(doc.get("lines"))
    masker = await _masker(request.app, row["id"])
    async with request.app[PLATFORM].db.acquire() as conn:
        last = await ingest.append(conn, row["id"], row["account_id"], lines, mask=masker)
    return web.json_response({"log_seq": last, "received": len(lines)})


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise ValueError(f"artifact larger than {limit} bytes")
        yield chunk


@authorized
async def put_artifact(request: web.Request, row: asyncpg.Record) -> web.StreamResponse:
    platform = request.app[PLATFORM]
    step = int(request.match_info["step"])
    path = request.match_info["path"]
    artifacts.check_path(path)
    async with platform.db.acquire() as conn:
        info = await artifacts.save(
            conn,
            platform.store,
            account_id=row["account_id"],
            run_id=row["id"],
            step_index=step,
            path=path,
            data=_limited(request.content.iter_chunked(256 * 1024), MAX_ARTIFACT_BYTES),
        )
    return web.json_response(info)


@authorized
async def get_previous_artifact(request: web.Request, row: asyncpg.Record) -> web.StreamResponse:
    prev = row["previous_run_id"]
    if prev is None:
        return _not_found()
    step = int(request.match_info["step"])
    path = artifacts.check_path(request.match_info["path"])
    platform = request.app[PLATFORM]
    async with platform.db.acquire() as conn:
        key = await conn.fetchval(
            "SELECT object_key FROM artifact WHERE run_id = $1 AND account_id = $2"
            " AND step_index = $3 AND path = $4",
            prev,
            row["account_id"],
            step,
            path,
        )
    if key is None:
        return _not_found()
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    try:
        chunks = platform.store.get(key)
        first = await anext(chunks, b"")
    except ObjectNotFound:
        return _not_found()
    await resp.prepare(request)
    await resp.write(first)
    async for chunk in chunks:
        await resp.write(chunk)
    await resp.write_eof()
    return resp


_FINAL = {
    "success": (RunStatus.SUCCESS, (RunStatus.RUNNING,)),
    "error": (RunStatus.ERROR, (RunStatus.STARTING, RunStatus.RUNNING)),
    "cancelled": (RunStatus.CANCELLED, (RunStatus.STARTING, RunStatus.RUNNING)),
}


@authorized
async def post_finish(request: web.Request, row: asyncpg.Record) -> web.StreamResponse:
    doc = await _body(request)
    to, expected = _FINAL[str(doc.get("status"))]
    message = doc.get("message")
    if message is not None and not isinstance(message, str):
        raise ValueError("message must be a string")
    if message:
        message = (await _masker(request.app, row["id"]))(message)
    async with request.app[PLATFORM].db.acquire() as conn:
        # the worker uploads each step's artifacts before it reports the end
        moved = await state.transition(
            conn,
            row["id"],
            to,
            expected=expected,
            message=message,
            set_fields={"artifacts_saved": True},
        )
        status = (
            moved["status"]
            if moved
            else await conn.fetchval("SELECT status FROM run WHERE id = $1", row["id"])
        )
    request.app[MASKERS].pop(row["id"], None)
    return web.json_response({"ok": moved is not None, "status": int(status)})


CANCEL_HUB = web.AppKey("cancel_hub", CancelHub)


def add_internal_routes(app: web.Application) -> None:
    app[MASKERS] = {}
    app[CANCEL_HUB] = CancelHub()
    base = "/internal/runs/{run_id}"
    r = app.router
    r.add_get(f"{base}/spec", get_spec)
    r.add_post(f"{base}/start", post_start)
    r.add_post(f"{base}/heartbeat", post_heartbeat)
    r.add_post(f"{base}/checkout", post_checkout)
    r.add_post(f"{base}/steps", post_steps)
    r.add_post(f"{base}/logs", post_logs)
    r.add_put(f"{base}/artifacts/{{step:\\d+}}/{{path:.+}}", put_artifact)
    r.add_get(f"{base}/previous-artifacts/{{step:\\d+}}/{{path:.+}}", get_previous_artifact)
    r.add_post(f"{base}/finish", post_finish)

    from server.gateway.artifacts import add_artifact_routes

    add_artifact_routes(app)
