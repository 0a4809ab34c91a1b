"""Dataloaders: one per relation per request, all scoped to the request's actor.

:class:`Loader` batches the keys asked for in one tick into one call of the
scoped queries in ``server.services.queries`` and keeps what it loaded for the
rest of the request. Two ways in:

* ``prime(keys, columns)``, used by ``graph.prefetch`` before fields resolve:
  one batch for all keys, fetching the columns the query selects (a row
  cached with fewer columns is fetched again with the union, never less);
* ``load(key)``, used by relations while fields resolve: the cached row
  itself when there is one (no coroutine), else a future resolved with the
  next batch, which fetches every column.

:class:`Loaders` is the request's view of one account: the actor, the
database, the vault, and the loaders, created on first use. Inside
:func:`pinned` every statement of the block runs on one pooled connection,
so a page and its prefetch pay one pool round trip instead of one each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping
from contextvars import ContextVar
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import asyncpg
from strawberry.dataloader import DataLoader

from graph.rows import Row
from graph.types.account import AccountRow, MembershipRow, TokenRow, UserRow
from graph.types.ide import IdeSessionRow
from graph.types.job import JobRow
from graph.types.project import EnvironmentRow, EnvVarRow, ProjectRow
from graph.types.run import ArtifactRow, RunRow, RunStepRow
from graph.types.warehouse import ConnectionRow, CredentialsRow
from server.services import queries
from server.services.actor import Actor
from server.services.queue import QueueInfo, queue_info

if TYPE_CHECKING:
    from server.db import Database
    from server.platform import Platform

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Columns = tuple[str, ...] | None  # None: every column
Fetch = Callable[[list[Any], Columns], Awaitable[Mapping[Any, Any]]]

ROWS: dict[str, type[Row]] = {
    cls.KIND: cls
    for cls in (
        AccountRow,
        UserRow,
        MembershipRow,
        TokenRow,
        ProjectRow,
        ConnectionRow,
        CredentialsRow,
        EnvironmentRow,
        EnvVarRow,
        JobRow,
        RunRow,
        RunStepRow,
        ArtifactRow,
        IdeSessionRow,
    )
}
# global id type name → kind (the loader of a kind has the kind's name)
KIND_OF_TYPE: dict[str, str] = {cls.TYPE: kind for kind, cls in ROWS.items()}


class _Pin:
    """One pooled connection shared by the statements of a block, one at a time."""

    __slots__ = ("conn", "lock")

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.lock:
            yield self.conn


_PIN: ContextVar[_Pin | None] = ContextVar("kiln_graphql_pin", default=None)


@contextlib.asynccontextmanager
async def pinned(db: Database) -> AsyncIterator[None]:
    """Run the block's statements (including tasks it starts) on one pooled connection."""
    if _PIN.get() is not None:
        yield
        return
    async with db.acquire() as conn:
        token = _PIN.set(_Pin(conn))
        try:
            yield
        finally:
            _PIN.reset(token)


def _union(a: Columns, b: Columns) -> Columns:
    if a is None or b is None:
        return None
    return tuple(dict.fromkeys((*a, *b)))


def _covers(have: Columns, want: Columns) -> bool:
    return have is None or (want is not None and set(want) <= set(have))


class Loader(Generic[K, V]):
    __slots__ = (
        "_cols",
        "_default",
        "_fetch",
        "_inflight",
        "_pending",
        "_tasks",
        "_values",
        "row_class",
    )

    def __init__(self, fetch: Fetch, row_class: type[Row], default: Any = None) -> None:
        self._fetch = fetch
        self.row_class = row_class  # what it loads (for a list relation: of each item)
        self._default = default  # for keys the batch did not return (missing or invisible)
        self._values: dict[K, V] = {}
        self._cols: dict[K, Columns] = {}
        self._pending: dict[K, asyncio.Future[V]] = {}
        self._inflight: dict[K, tuple[Columns, asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def load(self, key: K) -> V | asyncio.Future[V]:
        """The cached value (as the prefetch left it), else a future with a full load."""
        try:
            return self._values[key]
        except KeyError:
            return self._future(key)

    def load_full(self, key: K) -> V | asyncio.Future[V]:
        """For paths no prefetch covered: a value with every column."""
        if key in self._values and self._cols.get(key, ()) is None:
            return self._values[key]
        return self._future(key)

    def _future(self, key: K) -> asyncio.Future[V]:
        fut = self._pending.get(key)
        if fut is None:
            loop = asyncio.get_running_loop()
            if not self._pending:
                loop.call_soon(self._dispatch)
            fut = self._pending[key] = loop.create_future()
        return fut

    def _dispatch(self) -> None:
        batch, self._pending = self._pending, {}
        task = asyncio.ensure_future(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: dict[K, asyncio.Future[V]]) -> None:
        try:
            found = await self._fetch(list(batch), None)
        except Exception as exc:
            for fut in batch.values():
                if not fut.done():
                    fut.set_exception(exc)
            return
        for key, fut in batch.items():
            self._values[key] = value = found.get(key, self._default)
            self._cols[key] = None
            if not fut.done():
                fut.set_result(value)

    async def prime(self, keys: Iterable[K], columns: Columns = None) -> list[V]:
        """Load in one batch every key not cached with ``columns``; return the values.

        Concurrent primes of one key never shrink what is cached: a prime asks for
        the union of its columns and of those cached or in flight when it starts, so
        whichever finishes last stores a superset, and a prime already covered by
        one in flight waits for it instead of fetching again.
        """
        keys = list(dict.fromkeys(keys))
        waits: list[asyncio.Future[Any]] = []
        need: list[K] = []
        for k in keys:
            if k in self._pending:
                waits.append(self._pending[k])
                continue
            flight = self._inflight.get(k)
            if flight is not None and _covers(flight[0], columns):
                waits.append(flight[1])
            elif not (k in self._values and _covers(self._cols[k], columns)):
                need.append(k)
        if need:
            cols = columns
            for k in need:
                if k in self._cols:
                    cols = _union(cols, self._cols[k])
                if k in self._inflight:
                    cols = _union(cols, self._inflight[k][0])
            done = asyncio.get_running_loop().create_future()
            for k in need:
                self._inflight[k] = (cols, done)
            try:
                found = await self._fetch(need, cols)
                for k in need:
                    if k not in self._values or _covers(cols, self._cols[k]):
                        self._values[k] = found.get(k, self._default)
                        self._cols[k] = cols
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc)
                done.exception()  # retrieved: waiters re-raise it, nobody else must
                raise
            finally:
                for k in need:
                    if self._inflight.get(k, (None, None))[1] is done:
                        del self._inflight[k]
        if waits:
            await asyncio.gather(*waits)
        return [self._values[k] for k in keys]

    def put(self, key: K, value: V) -> None:
        """Cache a complete value (every column)."""
        self._values[key] = value
        self._cols[key] = None


class Loaders:
    """One account's loaders for one request (rows keep a reference to them)."""

    def __init__(self, actor: Actor, platform: Platform) -> None:
        self.actor = actor
        self.platform = platform
        self.db = platform.db
        self.vault = platform.vault

    def conns(self) -> queries.Connections:
        """Where this request's statements run: the pinned connection, else the pool."""
        return _PIN.get() or self.db

    def adopt(self, rows: list[Any]) -> list[Any]:
        for r in rows:
            r._l = self
        return rows

    def release(self) -> None:
        """Forget every loaded row once the request has answered.

        Rows point back here (``_l``), so a request's rows and loaders form
        cycles that only the garbage collector would free, after walking them;
        dropping the loaders lets reference counting free them at once. A row
        used afterwards still works: its relations load again.
        """
        for name, value in list(vars(self).items()):
            if isinstance(value, Loader | DataLoader):
                del self.__dict__[name]

    async def fresh(self, kind: str, pk: int) -> Row | None:
        """The row as stored now, every column (a mutation's result)."""
        cls = ROWS[kind]
        if kind == "user":
            records = await queries.users_by_ids(self.actor, self.conns(), [pk], record_class=cls)
        else:
            records = await queries.by_ids(self.actor, self.conns(), kind, [pk], record_class=cls)
        if not records:
            return None
        row = self.adopt(records)[0]
        getattr(self, kind).put(pk, row)  # nothing older may shadow it
        return row

    # --------------------------------------------------------------- batch functions

    def _by_ids(self, kind: str) -> Loader[int, Any]:
        cls = ROWS[kind]

        async def fetch(ids: list[int], columns: Columns) -> dict[int, Row]:
            records = await queries.by_ids(
                self.actor, self.conns(), kind, ids, columns=columns, record_class=cls
            )
            return {r["id"]: r for r in self.adopt(records)}

        return Loader(fetch, cls)

    def _by_parent(self, kind: str, column: str) -> Loader[int, Any]:
        cls = ROWS[kind]

        async def fetch(parents: list[int], columns: Columns) -> dict[int, list[Row]]:
            records = await queries.by_parent(
                self.actor,
                self.conns(),
                kind,
                column,
                parents,
                columns=columns,
                record_class=cls,
            )
            out: dict[int, list[Row]] = {}
            for r in self.adopt(records):
                out.setdefault(r[column], []).append(r)
            return out

        return Loader(fetch, cls, default=())

    @cached_property
    def queue_info(self) -> DataLoader[int, QueueInfo | None]:
        """Why queued runs wait and where they stand (``server.services.queue``), batched."""

        async def load(ids: list[int]) -> list[QueueInfo | None]:
            infos = await queue_info(self.actor, self.db, ids)
            return [infos.get(i) for i in ids]

        return DataLoader(load_fn=load)

    # --------------------------------------------------------------- objects by id

    @cached_property
    def account(self) -> Loader[int, Any]:
        return self._by_ids("account")

    @cached_property
    def user(self) -> Loader[int, Any]:
        async def fetch(ids: list[int], _columns: Columns) -> dict[int, Row]:
            records = await queries.users_by_ids(
                self.actor, self.conns(), ids, record_class=UserRow
            )
            return {r["id"]: r for r in self.adopt(records)}

        return Loader(fetch, UserRow)

    @cached_property
    def membership(self) -> Loader[int, Any]:
        return self._by_ids("membership")

    @cached_property
    def token(self) -> Loader[int, Any]:
        return self._by_ids("token")

    @cached_property
    def project(self) -> Loader[int, Any]:
        return self._by_ids("project")

    @cached_property
    def connection(self) -> Loader[int, Any]:
        return self._by_ids("connection")

    @cached_property
    def credentials(self) -> Loader[int, Any]:
        return self._by_ids("credentials")

    @cached_property
    def environment(self) -> Loader[int, Any]:
        return self._by_ids("environment")

    @cached_property
    def env_var(self) -> Loader[int, Any]:
        return self._by_ids("env_var")

    @cached_property
    def job(self) -> Loader[int, Any]:
        return self._by_ids("job")

    @cached_property
    def run(self) -> Loader[int, Any]:
        return self._by_ids("run")

    @cached_property
    def run_step(self) -> Loader[int, Any]:
        return self._by_ids("run_step")

    @cached_property
    def artifact(self) -> Loader[int, Any]:
        return self._by_ids("artifact")

    @cached_property
    def ide_session(self) -> Loader[int, Any]:
        return self._by_ids("ide_session")

    # --------------------------------------------------------------- children of a parent

    @cached_property
    def steps_by_run(self) -> Loader[int, Any]:
        return self._by_parent("run_step", "run_id")

    @cached_property
    def artifacts_by_run(self) -> Loader[int, Any]:
        return self._by_parent("artifact", "run_id")

    @cached_property
    def environments_by_project(self) -> Loader[int, Any]:
        return self._by_parent("environment", "project_id")

    @cached_property
    def jobs_by_project(self) -> Loader[int, Any]:
        return self._by_parent("job", "project_id")

    @cached_property
    def jobs_by_environment(self) -> Loader[int, Any]:
        return self._by_parent("job", "environment_id")

    @cached_property
    def env_vars_by_project(self) -> Loader[int, Any]:
        return self._by_parent("env_var", "project_id")

    @cached_property
    def last_run_by_job(self) -> Loader[int, Any]:
        async def fetch(job_ids: list[int], columns: Columns) -> dict[int, Row]:
            records = await queries.latest_runs(
                self.actor, self.conns(), job_ids, columns=columns, record_class=RunRow
            )
            return {r["job_id"]: r for r in self.adopt(records)}

        return Loader(fetch, RunRow)
