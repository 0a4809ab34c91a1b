"""The web console: ``/`` and ``/static/...``, plain files written here (no build step).

* ``GET /`` and the client routes of the single-page app (``/login``,
  ``/jobs``, ``/jobs/<id>``, ``/runs``, ``/runs/<id>``, ``/develop``) answer
  ``index.html`` with 200; the browser's router (``static/js/router.js``)
  picks the page. ``GET /`` answering 200 is also what dbt Cloud clients
  expect when they probe a server. Anything else is not ours: the REST API
  under ``/api/``, ``/graphql``, ``/ide/<id>/ws`` and ``/runs/<id>/logs.txt``
  keep their own routes (only exact client paths are mapped here).
* ``/static/<path>`` serves files of ``server/gateway/static`` (no directory
  listing, no path outside it), each with a strong ``ETag`` and
  ``Cache-Control: no-cache``: the browser keeps its copy and revalidates,
  a 304 costs nothing, and a new release is picked up at once without hashed
  file names.
* Every console response carries a strict Content-Security-Policy (scripts,
  styles, images and connections from this origin only, websockets to this
  host named explicitly; no inline script or style, no eval, no framing) and
  the usual hardening headers.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().with_name("static")
CLIENT_ROUTES = (
    "/",
    "/login",
    "/jobs",
    "/jobs/{id:\\d+}",
    "/runs",
    "/runs/{id:\\d+}",
    "/develop",
)
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'{ws}",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP.format(ws=""),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


@dataclass(frozen=True)
class _File:
    body: bytes
    etag: str
    content_type: str


class _Files:
    """Files of the static directory, read once and again when they change on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._cache: dict[Path, tuple[tuple[int, int], _File]] = {}

    def get(self, rel: str) -> _File | None:
        if not rel or "\x00" in rel or "\\" in rel:
            return None
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            return None
        if any(part.startswith(".") for part in path.relative_to(self.root).parts):
            return None
        try:
            st = path.stat()
        except OSError:
            return None
        if not path.is_file():
            return None
        key = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        body = path.read_bytes()
        ctype = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        f = _File(
            body,
            '"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            ctype or "application/octet-stream",
        )
        self._cache[path] = (key, f)
        return f


def csp_for(request: web.Request) -> str:
    """The policy, with this host's websocket origins spelled out: CSP3 lets 'self' cover
    ws:/wss:, but not every browser in use does."""
    hosts = {request.host, request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()}
    ws = "".join(f" ws://{h} wss://{h}" for h in sorted(hosts) if h and _HOST.match(h))
    return CSP.format(ws=ws)


def _respond(request: web.Request, f: _File) -> web.Response:
    headers = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": csp_for(request),
        "ETag": f.etag,
        "Cache-Control": "no-cache",
        "Content-Type": f.content_type,
    }
    if f.etag in request.headers.get("If-None-Match", ""):
        headers.pop("Content-Type")
        return web.Response(status=304, headers=headers)
    return web.Response(body=f.body, headers=headers)


def add_console_routes(app: web.Application, root: Path = STATIC) -> None:
    files = _Files(root)

    async def index(request: web.Request) -> web.Response:
        f = files.get("index.html")
        if f is None:
            raise web.HTTPNotFound(text="the web console is not installed")
        return _respond(request, f)

    async def static(request: web.Request) -> web.Response:
        f = files.get(request.match_info["path"])
        if f is None:
            raise web.HTTPNotFound(text="not found", headers=SECURITY_HEADERS)
        return _respond(request, f)

    for path in CLIENT_ROUTES:
        app.router.add_get(path, index)
    app.router.add_get("/static/{path:.+}", static)
