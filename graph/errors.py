"""Errors: UserErrors in mutation payloads, codes on GraphQL errors, no leaked internals.

* A mutation that cannot be carried out returns ``errors: [UserError!]!`` with
  ``code`` (invalid, not_found, forbidden, conflict...), ``message`` and
  ``field``; the domain's :class:`DomainError` maps onto it one to one.
* Query fields raise the same domain errors; :func:`process` gives every
  GraphQL error an ``extensions.code`` (UNAUTHENTICATED, NOT_FOUND,
  BAD_USER_INPUT, QUERY_TOO_COMPLEX...). Anything unexpected becomes
  ``INTERNAL_SERVER_ERROR`` with a generic message, and only those are logged
  with their traceback.
"""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError, GraphQLSyntaxError

from server.ids import InvalidId
from server.services.errors import DomainError

log = logging.getLogger("kiln.graphql")


@strawberry.type(description="Why a mutation did not happen; field names the input at fault.")
class UserError:
    code: str
    message: str
    field: str | None = None


def user_error(exc: DomainError) -> UserError:
    return UserError(code=exc.code, message=exc.message, field=exc.field)


def error_code(error: GraphQLError) -> str:
    original = error.original_error
    if isinstance(original, DomainError):
        return "BAD_USER_INPUT" if original.code == "invalid" else original.code.upper()
    if isinstance(original, InvalidId):
        return "BAD_USER_INPUT"
    if original is not None and not isinstance(original, GraphQLError):
        return "INTERNAL_SERVER_ERROR"
    if isinstance(error, GraphQLSyntaxError) or isinstance(original, GraphQLSyntaxError):
        if "tokens" in error.message:
            return "QUERY_TOO_LARGE"
        return "GRAPHQL_PARSE_FAILED"
    return "GRAPHQL_VALIDATION_FAILED"


def process(errors: list[GraphQLError]) -> None:
    """Give every error its ``extensions.code``; mask and log the unexpected ones.

    Strawberry calls this (through ``Schema.process_errors``) for every result
    of every transport before it is sent, so the codes are the same over HTTP
    and websockets.
    """
    for error in errors:
        ext = error.extensions if isinstance(error.extensions, dict) else {}
        if "code" in ext:
            continue
        code = error_code(error)
        if code == "INTERNAL_SERVER_ERROR":
            log.error("GraphQL resolver failed at %s", error.path, exc_info=error.original_error)
            error.message = "internal server error"
        original = error.original_error
        if isinstance(original, DomainError) and original.field:
            ext = {**ext, "field": original.field}
        error.extensions = {**ext, "code": code}
