"""The dbt Cloud compatible REST API: Administrative API v2 and the v3 webhook routes.

Existing orchestrators (Airflow, Dagster, Prefect, dbt-cloud-cli) call
``/api/v2/accounts/{account_id}/...`` with ``Authorization: Token <t>``;
pointing them at Kiln is a host name change. Every route answers with and
without a trailing slash. Handlers are thin: they read the request
(:mod:`.params`), call the services, and shape the answer
(:mod:`.serialize`, :mod:`.envelope`). ``GET /`` answers 200 because some
clients test a connection that way; ``/api/v2/openapi.json`` describes v2.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from server.gateway.rest import accounts, jobs, runs, webhooks
from server.gateway.rest.auth import add_limiter
from server.gateway.rest.envelope import rest_middleware
from server.gateway.rest.openapi import openapi_view

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
V2 = "/api/v2/accounts/{account_id}"
V3 = "/api/v3/accounts/{account_id}"


async def root(_request: web.Request) -> web.Response:
    return web.json_response({"name": "Kiln", "status": "ok", "api": "/api/v2/"})


def _add(app: web.Application, prefix: str, routes: Iterable[tuple[str, str, Handler]],
         *, slash: bool = True) -> None:
    for method, path, handler in routes:
        app.router.add_route(method, prefix + path, handler)
        if slash:
            app.router.add_route(method, prefix + path + "/", handler)


def add_rest_routes(app: web.Application) -> None:
    add_limiter(app)
    app.middlewares.append(rest_middleware)
    if not any(
        r.resource is not None and r.resource.canonical == "/" and r.method in ("GET", "*")
        for r in app.router.routes()
    ):
        app.router.add_get("/", root)
    app.router.add_get("/api/v2/openapi.json", openapi_view)
    _add(app, "/api/v2/accounts", [("GET", "", accounts.list_accounts)])
    _add(app, V2, [("GET", "", accounts.get_account)])
    _add(app, V2, jobs.ROUTES + runs.ROUTES)
    _add(app, V2, jobs.RAW_ROUTES + runs.RAW_ROUTES, slash=False)
    _add(app, V3, webhooks.ROUTES)
