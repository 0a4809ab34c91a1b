"""``GET /runs/{id}/logs.txt``: a run's whole log as plain text, from the table or the archive.

``{id}`` is the run's integer id (as in the REST API) or its GraphQL global
id. Authorization is the same as for ``run(id)``: a token (``Authorization:
Bearer``/``Token``) or the browser's session cookie, READ permission in the
run's account; a run of another account is 404 like a missing one. The body
is streamed in chunks, one line per log line: ``<ts> [<level>] <message>``.
"""

from __future__ import annotations

from aiohttp import web

from server.gateway.app import PLATFORM
from server.ids import InvalidId, from_global_id
from server.logs.read import authorize_run, log_reader
from server.services.auth import SESSION_COOKIE, authenticate, credentials_from_headers
from server.services.errors import DomainError, NotFound


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _run_pk(raw: str) -> int:
    if raw.isdigit():
        pk = int(raw)
        if 0 < pk < 2**63:
            return pk
        raise NotFound("run not found")
    try:
        return from_global_id(raw, "Run")[1]
    except InvalidId:
        raise NotFound("run not found") from None


async def download_logs(request: web.Request) -> web.StreamResponse:
    platform = request.app[PLATFORM]
    presented = credentials_from_headers(
        request.headers.get("Authorization"), request.cookies.get(SESSION_COOKIE)
    )
    principal = await authenticate(presented)
    if principal is None:
        return _json_error(401, "authentication required")
    try:
        pk = _run_pk(request.match_info["run_id"])
        account = request.headers.get("X-Kiln-Account")
        account_pk = from_global_id(account, "Account")[1] if account else None
        actor = principal.actor(account_pk)
        run = await authorize_run(platform.db, actor, pk)
    except InvalidId:
        return _json_error(404, "account not found")
    except DomainError as exc:
        status = 403 if exc.code == "forbidden" else 404
        return _json_error(status, exc.message)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Disposition": f'attachment; filename="run-{run.id}.log"',
            "Cache-Control": "no-store",
        }
    )
    await resp.prepare(request)
    async for lines in log_reader(platform).iter_all(run.id, run.account_id):
        await resp.write("".join(ln.as_text() + "\n" for ln in lines).encode("utf-8"))
    await resp.write_eof()
    return resp


def add_logs_download_routes(app: web.Application) -> None:
    app.router.add_get("/runs/{run_id}/logs.txt", download_logs)
