"""/internal/...: the API the run worker talks to with its run-scoped token."""

from __future__ import annotations

from aiohttp import web


def add_internal_routes(app: web.Application) -> None:
    """Routes are added by the run execution code."""
