"""The GraphQL schema (filled in by the API issue; this is the seed)."""

from __future__ import annotations

import strawberry

from server import __version__


@strawberry.type
class Query:
    @strawberry.field(description="The server's version.")
    def version(self) -> str:
        return __version__


schema = strawberry.Schema(query=Query)


def sdl() -> str:
    return schema.as_str() + "\n"
