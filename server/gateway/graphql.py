"""/graphql: the strawberry view over aiohttp (context, auth, limits)."""

from __future__ import annotations

from aiohttp import web
from strawberry.aiohttp.views import GraphQLView

from graph.schema import schema


def add_graphql_routes(app: web.Application) -> None:
    view = GraphQLView(schema=schema, graphql_ide="graphiql")
    app.router.add_route("*", "/graphql", view)
