"""Rows: the database records GraphQL resolves fields on.

The strawberry types in ``graph.types`` describe the schema; the values
behind them are rows: asyncpg records of a :class:`Row` subclass (asyncpg
builds them in C, ``record_class=``), so a scalar field is a C-level
``property(itemgetter(column))`` read and nothing is copied.

Each field declares the columns it needs (:class:`column`, :func:`computed`,
:class:`relation`), and the list resolvers fetch only the columns the query
selects (``graph.prefetch``). A relation asks the request's dataloader and
gets the related row itself when the prefetch has loaded it, an awaitable
only otherwise. So a page of 50 runs with their jobs and steps resolves
~1,000 fields without one coroutine per field.

Rows hold the request's loaders in ``_l`` (set when they are loaded).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import asyncpg

from server.ids import to_global_id

if TYPE_CHECKING:
    from graph.loaders import Loaders

T = TypeVar("T")
_CAMEL = re.compile(r"_([a-z])")


def camel(name: str) -> str:
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


class column(property):
    """A field read straight from one column."""

    def __init__(self, name: str) -> None:
        super().__init__(itemgetter(name))
        self.columns: tuple[str, ...] = (name,)


class _computed(property):
    def __init__(self, fget: Callable[[Any], Any], columns: tuple[str, ...]) -> None:
        super().__init__(fget)
        self.columns = columns


def computed(*columns: str) -> Callable[[Callable[[Any], T]], T]:
    """A property computed from ``columns`` (which the query then fetches)."""

    def decorate(fn: Callable[[Any], T]) -> T:
        return _computed(fn, columns)  # type: ignore[return-value]

    return decorate


class relation:
    """A related row (or list of rows) fetched through the named loader by ``key``."""

    __slots__ = ("columns", "key", "loader")

    def __init__(self, loader: str, key: str) -> None:
        self.loader = loader
        self.key = key
        self.columns = (key,)

    def __get__(self, row: Row | None, owner: type | None = None) -> Any:
        if row is None:
            return self
        key = row[self.key]
        if key is None:
            return None
        return getattr(row._l, self.loader).load(key)


class Row(asyncpg.Record):
    """Base of all rows: the global id, the primary key, and what each field needs."""

    TYPE: ClassVar[str] = ""
    KIND: ClassVar[str] = ""  # as in server.services.queries
    BASE: ClassVar[tuple[str, ...]] = ("id",)  # always fetched
    NEEDS: ClassVar[dict[str, tuple[str, ...]]] = {}  # GraphQL field → columns
    RELATIONS: ClassVar[dict[str, relation]] = {}
    _l: Loaders

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        needs: dict[str, tuple[str, ...]] = {}
        rels: dict[str, relation] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                cols = getattr(value, "columns", None)
                if isinstance(cols, tuple):
                    needs[camel(name)] = cols
                if isinstance(value, relation):
                    rels[camel(name)] = value
        cls.NEEDS = needs
        cls.RELATIONS = rels

    @property
    def pk(self) -> int:
        return self["id"]

    @property
    def id(self) -> str:
        return to_global_id(self.TYPE, self["id"])

    database_id = column("id")

    @classmethod
    def columns_for(cls, fields: Iterable[str]) -> tuple[str, ...]:
        """The columns to fetch for these selected GraphQL fields."""
        return _columns_for(cls, frozenset(fields))


@lru_cache(maxsize=1024)
def _columns_for(cls: type[Row], fields: frozenset[str]) -> tuple[str, ...]:
    cols = dict.fromkeys(cls.BASE)
    for f in sorted(fields):
        for c in cls.NEEDS.get(f, ()):
            cols[c] = None
    return tuple(cols)


def backed_by(row: type[Row]) -> Callable[[type[T]], type[T]]:
    """Let a strawberry type resolve from ``row`` objects (apply below ``@strawberry.type``)."""

    def decorate(cls: type[T]) -> type[T]:
        def is_type_of(_cls: type, obj: Any, _info: Any) -> bool:
            return isinstance(obj, row)

        cls.is_type_of = classmethod(is_type_of)  # type: ignore[attr-defined]
        return cls

    return decorate
