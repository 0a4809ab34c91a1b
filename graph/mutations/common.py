"""What every mutation shares: authenticate, run the service, turn refusals into UserErrors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry

from graph.context import Context
from graph.errors import UserError, user_error
from graph.loaders import Loaders
from server.services.errors import DomainError, Unauthenticated

P = TypeVar("P")


async def run_mutation(
    info: strawberry.Info,
    payload: Callable[..., P],
    op: Callable[[Loaders], Awaitable[P]],
    account_id: str | None = None,
) -> P:
    """``op`` with the caller's loaders; a DomainError becomes ``payload(errors=[...])``.

    Missing or invalid credentials stay a GraphQL error (UNAUTHENTICATED): the
    caller did not get as far as asking for anything.
    """
    ctx: Context = info.context
    try:
        loaders = await ctx.loaders(account_id)
        return await op(loaders)
    except Unauthenticated:
        raise
    except DomainError as exc:
        return payload(errors=[user_error(exc)])


def provided(obj: Any) -> dict[str, Any]:
    """An input's fields that the client gave (UNSET ones are left out), by Python name."""
    out: dict[str, Any] = {}
    for f in obj.__strawberry_definition__.fields:
        value = getattr(obj, f.python_name)
        if value is not strawberry.UNSET:
            out[f.python_name] = value
    return out


@strawberry.type(description="The result of a delete: the id that is gone, or why not.")
class DeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
