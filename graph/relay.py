"""Relay conventions: the Node interface, opaque global ids and cursor connections.

Global ids are ``server.ids`` ids (base64url of ``Type:pk``). Connections are
forward-only (``first``/``after``, default 50, max 500) over the keyset pages
of ``server.services.queries``; ``totalCount`` is a separate COUNT that runs
only when the query asks for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import strawberry

from server.ids import InvalidId, from_global_id
from server.services.errors import ValidationFailed

T = TypeVar("T")


@strawberry.interface(description="An object with a global id; fetch any of them with node(id:).")
class Node:
    id: strawberry.ID

    @classmethod
    def resolve_type(cls, obj: Any, *_args: Any) -> str:
        return obj.TYPE


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type(description="A page of objects, newest first for runs, oldest first otherwise.")
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo

    @strawberry.field(description="How many objects match, over all pages (a separate query).")
    async def total_count(self) -> int:
        return await self._count()  # type: ignore[attr-defined]


class EdgeRow:
    """An edge whose cursor is computed only if asked for."""

    __slots__ = ("_cursor_of", "node")

    def __init__(self, node: Any, cursor_of: Callable[[Any], str]) -> None:
        self.node = node
        self._cursor_of = cursor_of

    @property
    def cursor(self) -> str:
        return self._cursor_of(self.node)


class ConnectionRow:
    __slots__ = ("_count", "edges", "page_info")

    def __init__(
        self,
        nodes: Sequence[Any],
        cursor_of: Callable[[Any], str],
        *,
        has_next: bool,
        has_previous: bool,
        count: Callable[[], Awaitable[int]],
    ) -> None:
        self.edges = [EdgeRow(n, cursor_of) for n in nodes]
        self.page_info = PageInfo(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=cursor_of(nodes[0]) if nodes else None,
            end_cursor=cursor_of(nodes[-1]) if nodes else None,
        )
        self._count = count


def decode_id(gid: str, type_name: str, field: str = "id") -> int:
    """The primary key in a global id of ``type_name``; ValidationFailed names the field."""
    try:
        return from_global_id(gid, type_name)[1]
    except InvalidId as exc:
        raise ValidationFailed(str(exc), field=field) from None


def decode_optional(gid: str | None, type_name: str, field: str) -> int | None:
    return None if gid is None else decode_id(gid, type_name, field)


def decode_any(gid: str, field: str = "id") -> tuple[str, int]:
    try:
        return from_global_id(gid)
    except InvalidId as exc:
        raise ValidationFailed(str(exc), field=field) from None
