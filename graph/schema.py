"""The GraphQL schema: Query and Mutation roots, types, and per-operation extensions.

Extensions, in order: limits (size, depth, aliases, page size: checked before
execution), and the parser and validation caches (parsing and
validating the same query text again is most of strawberry's fixed cost per
request). ``kiln schema`` prints :func:`sdl`; ``graph/schema.graphql`` is
that output, checked in.
"""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.types import ExecutionContext

from graph import errors as errors_
from graph.limits import Limits
from graph.mutations import Mutation
from graph.mutations.ide import IdeQueries
from graph.mutations.webhooks import WebhookQueries
from graph.queries import Query as DomainQuery
from graph.subscriptions import Subscription
from graph.types.account import Account, Membership, Token, User
from graph.types.ide import IdeSession
from graph.types.job import Job
from graph.types.project import Environment, EnvVar, Project
from graph.types.run import Artifact, Run, RunStep
from graph.types.warehouse import Credentials, WarehouseConnection
from server import __version__

CACHE_SIZE = 256
NODE_TYPES: list[Any] = [
    Account,
    User,
    Membership,
    Token,
    Project,
    WarehouseConnection,
    Credentials,
    Environment,
    EnvVar,
    Job,
    Run,
    RunStep,
    Artifact,
    IdeSession,
]


@strawberry.type
class Query(DomainQuery, IdeQueries, WebhookQueries):
    @strawberry.field(description="The server's version (needs no credentials).")
    def version(self) -> str:
        return __version__


class KilnSchema(strawberry.Schema):
    """Errors get their codes here: strawberry calls this on every transport."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        errors_.process(errors)


schema = KilnSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    types=NODE_TYPES,
    extensions=[
        Limits,
        lambda: ParserCache(maxsize=CACHE_SIZE),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
    ],
)


def sdl() -> str:
    return schema.as_str() + "\n"
