"""The GraphQL schema: Query and Mutation roots, types, and per-operation extensions.

Extensions, in order: limits (size, depth, aliases, page size: checked before
execution), and the parser and validation caches (parsing and
validating the same query text again is most of strawberry's fixed cost per
request). ``kiln schema`` prints :func:`sdl`; ``graph/schema.graphql`` is
that output, checked in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLObjectType
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.schema_converter import GraphQLCoreConverter
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


def _attribute(name: str) -> Callable[..., Any]:
    def resolve(source: Any, _info: Any) -> Any:
        return getattr(source, name)

    return resolve


def plain_attribute_resolvers(built: strawberry.Schema) -> int:
    """Let graphql-core read basic fields with one call; returns how many it changed.

    A basic field (no resolver, no extension) resolves to ``getattr(source,
    python_name)``; strawberry reaches that through three nested calls and two
    properties per field, and a page of 50 runs resolves about 750 fields. This
    swaps in a closure doing exactly that read, for strawberry's own basic-field
    wrapper only (marked ``_is_default``) and only while the schema's default
    resolver is ``getattr``, so what a field returns cannot change.
    """
    if built.config.default_resolver is not getattr:
        return 0
    changed = 0
    for gtype in built._schema.type_map.values():
        if not isinstance(gtype, GraphQLObjectType) or gtype.name.startswith("__"):
            continue
        for gfield in gtype.fields.values():
            field = gfield.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if field is None or not getattr(gfield.resolve, "_is_default", False):
                continue
            if field.is_basic_field and not field.is_subscription:
                gfield.resolve = _attribute(field.python_name)
                changed += 1
    return changed


plain_attribute_resolvers(schema)


def sdl() -> str:
    return schema.as_str() + "\n"
