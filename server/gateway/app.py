"""The aiohttp application: health, readiness and the API routes.

This module composes; it holds no domain logic. Handlers reach the core
through ``request.app[PLATFORM]``.
"""

from __future__ import annotations

from aiohttp import web

from server.platform import Platform

PLATFORM = web.AppKey("platform", Platform)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ok, reason = await request.app[PLATFORM].db.ready()
    return web.json_response(
        {"status": "ok" if ok else "unavailable", "reason": reason}, status=200 if ok else 503
    )


async def metrics_view(request: web.Request) -> web.Response:
    from server import metrics

    async with request.app[PLATFORM].db.acquire() as conn:
        await metrics.collect_db_gauges(conn)
    return web.Response(body=metrics.render(), content_type="text/plain")


def build_app(platform: Platform) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[PLATFORM] = platform
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    # each area adds its own routes; this module only composes them
    from server.gateway.console import add_console_routes
    from server.gateway.graphql import add_graphql_routes
    from server.gateway.internal import add_internal_routes
    from server.gateway.rest import add_rest_routes

    add_console_routes(app)  # before the REST routes: GET / is the console's index.html
    add_graphql_routes(app)
    add_internal_routes(app)
    add_rest_routes(app)
    add_ide_routes(app, platform)
    return app


def add_ide_routes(app: web.Application, platform: Platform) -> None:
    """The frame-relay fallback for IDE upgrades that reach aiohttp (keep-alive reuse)."""
    from server.gateway.ide import make_resolver
    from server.gateway.ide_proxy import ide_ws_fallback

    broker = platform.services.get("ide_broker")
    if broker is not None:
        app.router.add_get("/ide/{session}/ws", ide_ws_fallback(make_resolver(broker)))
