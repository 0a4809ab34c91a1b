"""The gateway's console routes over real HTTP: index, static files, cache and security headers."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

from server.gateway.console import CLIENT_ROUTES, STATIC
from tests.console.conftest import Kiln

JS = STATIC / "js"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_index_at_root_and_client_routes(kiln: Kiln) -> None:
    status, headers, body = get(kiln.url + "/")
    assert status == 200  # dbt Cloud clients probe GET / for a 200
    assert headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    host = kiln.url.split("://", 1)[1]
    assert f"connect-src 'self' ws://{host} wss://{host};" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    html = body.decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts
    assert all('src="/static/' in attrs and not inner.strip() for attrs, inner in scripts)
    assert " style=" not in html and "<style" not in html
    for path in ("/login", "/jobs", "/jobs/1", "/runs", "/runs/42", "/develop"):
        s, h, b = get(kiln.url + path)
        assert (s, b) == (200, body), path
        assert h["Cache-Control"] == "no-cache"


def test_static_files_types_etags_and_304(kiln: Kiln) -> None:
    for rel, ctype in (
        ("js/app.js", "text/javascript"),
        ("css/app.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ):
        status, headers, body = get(f"{kiln.url}/static/{rel}")
        assert status == 200 and headers["Content-Type"].startswith(ctype), rel
        assert body == (STATIC / rel).read_bytes()
        assert headers["Cache-Control"] == "no-cache" and headers["ETag"]
        again, h2, b2 = get(f"{kiln.url}/static/{rel}", {"If-None-Match": headers["ETag"]})
        assert again == 304 and b2 == b"" and h2["ETag"] == headers["ETag"]


def test_nothing_outside_the_static_dir_and_other_routes_untouched(kiln: Kiln) -> None:
    for path in (
        "/static/../console.py",
        "/static/%2e%2e/console.py",
        "/static/js/nope.js",
        "/static/js",
        "/static/",
        "/jobs/abc",
        "/nope",
    ):
        status, _, body = get(kiln.url + path)
        assert status == 404, path
        assert b"add_console_routes" not in body
    # the REST API, GraphQL and the log download keep their own answers (JSON, not the console)
    status, headers, _ = get(kiln.url + "/api/v2/accounts/")
    assert status == 401 and headers["Content-Type"].startswith("application/json")
    status, headers, _ = get(kiln.url + "/runs/1/logs.txt")
    assert status in (401, 404) and not headers["Content-Type"].startswith("text/html")
    status, _, body = get(kiln.url + "/healthz")
    assert status == 200 and b"ok" in body


def test_modules_resolve_and_stay_csp_clean() -> None:
    """Every relative import names a file that exists; no eval, inline handlers or innerHTML."""
    modules = sorted(JS.rglob("*.js"))
    assert len(modules) >= 15
    for path in modules:
        src = path.read_text()
        for spec in re.findall(r"""(?:from|import)\s*\(?\s*["'](\.{1,2}/[^"']+)["']""", src):
            assert (path.parent / spec).resolve().is_file(), f"{path.name}: {spec}"
        for banned in (
            "innerHTML",
            "outerHTML",
            "eval(",
            "new Function",
            'setAttribute("style"',
            "document.write",
            "insertAdjacentHTML",
        ):
            assert banned not in src, f"{path.relative_to(STATIC)} uses {banned}"
    routes = (JS / "app.js").read_text()
    for path in CLIENT_ROUTES:
        pattern = re.sub(r"\{id[^}]*\}", ":id", path)
        assert f'route("{pattern}"' in routes, f"no client route for {path}"
