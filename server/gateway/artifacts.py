"""Artifact downloads for users: ``GET /api/runs/{run}/artifacts[/{path}]``.

Authorized like the run itself: ``Authorization: Bearer <token>`` (or
``Token <token>``), or the browser's session cookie, acting in the account
that owns the run; a run of an account the caller is not in is 404, the same
answer as a run that does not exist. The run
is an integer id or a Relay global id (``Run:<pk>``). ``?step=N`` picks the
step; without it the latest step that wrote the path. The body is streamed
from the object store, never loaded whole; ``X-Kiln-Sha256`` carries the
digest recorded at upload so clients can verify what they got.
"""

from __future__ import annotations

import mimetypes

from aiohttp import web

from server.gateway.app import PLATFORM
from server.ids import InvalidId, from_global_id
from server.models import Run
from server.services import artifacts
from server.services.actor import Actor
from server.services.auth import SESSION_COOKIE, authenticate, credentials_from_headers
from server.services.errors import DomainError, Forbidden, NotFound


def _status(exc: DomainError) -> int:
    return 404 if isinstance(exc, NotFound) else 403 if isinstance(exc, Forbidden) else 400


async def _actor(request: web.Request) -> Actor | None:
    """The caller acting in the run's own account (a cookie user may be in several)."""
    presented = credentials_from_headers(
        request.headers.get("Authorization"), request.cookies.get(SESSION_COOKIE)
    )
    principal = await authenticate(presented)
    if principal is None:
        return None
    try:
        run_id = _run_id(request.match_info["run"])
    except NotFound:
        return principal.actor(principal.account_ids[0]) if principal.account_ids else None
    account_id = await Run.filter(id=run_id).first().values_list("account_id", flat=True)
    if account_id is None or account_id not in principal.account_ids:
        # not theirs, or missing: the actor of their own account then answers "not found"
        return principal.actor(principal.account_ids[0]) if principal.account_ids else None
    return principal.actor(account_id)


def _run_id(raw: str) -> int:
    if raw.isdigit():
        return int(raw)
    try:
        return from_global_id(raw, "Run")[1]
    except InvalidId:
        raise NotFound("run not found") from None


def _step(request: web.Request) -> int | None:
    raw = request.query.get("step")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise NotFound("artifact not found")
    return int(raw)


async def list_artifacts(request: web.Request) -> web.Response:
    actor = await _actor(request)
    if actor is None:
        return web.json_response({"error": "authentication required"}, status=401)
    try:
        rows = await artifacts.list_for_run(actor, _run_id(request.match_info["run"]))
    except DomainError as exc:
        return web.json_response({"error": exc.message}, status=_status(exc))
    return web.json_response(
        [{"step": a.step_index, "path": a.path, "size": a.size, "sha256": a.sha256} for a in rows]
    )


async def download(request: web.Request) -> web.StreamResponse:
    actor = await _actor(request)
    if actor is None:
        return web.json_response({"error": "authentication required"}, status=401)
    try:
        dl = await artifacts.open_download(
            actor,
            request.app[PLATFORM].store,
            _run_id(request.match_info["run"]),
            request.match_info["path"],
            _step(request),
        )
    except DomainError as exc:
        return web.json_response({"error": exc.message}, status=_status(exc))
    return await send_download(request, dl)


async def send_download(request: web.Request, dl: artifacts.Download) -> web.StreamResponse:
    """Stream an opened artifact (shared with the REST API's raw artifact routes)."""
    art = dl.artifact
    ctype = mimetypes.guess_type(art.path)[0] or "application/octet-stream"
    resp = web.StreamResponse(
        headers={
            "Content-Type": ctype,
            "Content-Length": str(art.size),
            "X-Kiln-Sha256": art.sha256,
            "Cache-Control": "private, no-store",
        }
    )
    await resp.prepare(request)
    async for chunk in dl.chunks:
        await resp.write(chunk)
    await resp.write_eof()
    return resp


def add_artifact_routes(app: web.Application) -> None:
    app.router.add_get("/api/runs/{run}/artifacts", list_artifacts)
    app.router.add_get("/api/runs/{run}/artifacts/{path:.+}", download)
