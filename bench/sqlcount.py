"""Count the SQL statements this process sends to PostgreSQL (tests and benchmarks only).

:func:`install` wraps asyncpg's ``Connection`` methods once per process, so both
pools (tortoise's and the raw one) are counted, including the BEGIN/COMMIT of
transactions: every round trip that carries a statement counts as one.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg.connection

_COUNT = [0]


def _counting(fn: Callable[..., Any], *, only_without_args: bool = False) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if not only_without_args or not args:
            _COUNT[0] += 1
        return await fn(self, query, *args, **kwargs)

    wrapper.__kiln_counting__ = True  # type: ignore[attr-defined]
    return wrapper


def install() -> None:
    """Start counting (idempotent)."""
    cls = asyncpg.connection.Connection
    if getattr(cls._execute, "__kiln_counting__", False):
        return
    cls._execute = _counting(cls._execute)  # fetch, fetchrow, fetchval, execute with args
    cls._executemany = _counting(cls._executemany)
    # execute() without arguments takes the simple-query path and skips _execute
    cls.execute = _counting(cls.execute, only_without_args=True)


def total() -> int:
    return _COUNT[0]


@contextlib.contextmanager
def counting() -> Iterator[Callable[[], int]]:
    """``with counting() as n: ...; n()`` is the number of statements sent inside."""
    install()
    start = _COUNT[0]
    yield lambda: _COUNT[0] - start
