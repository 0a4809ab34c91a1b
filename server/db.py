"""Database access: tortoise for the domain, a small asyncpg pool for hot paths.

PostgreSQL is the only database (embedded or external): LISTEN/NOTIFY,
``FOR UPDATE SKIP LOCKED`` and advisory locks are used freely. Tortoise
holds its own pool; :class:`Database` adds a raw asyncpg pool for code that
is faster or clearer in SQL (log ingest, dispatch, state transitions).

Invariant of the raw pool: its connections carry no session state. What needs
a session (LISTEN, session-level advisory locks, ``SET``) runs on a dedicated
connection from :meth:`Database.connect`; pooled work uses transactions, and
transaction-scoped locks and ``SET LOCAL`` end with them. So a released
connection only needs an open transaction rolled back (asyncpg always does
that), not asyncpg's reset query: one round trip less per pooled use, which is
one of the five statements of a GraphQL page.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
from tortoise import Tortoise
from tortoise.context import TortoiseContext

log = logging.getLogger("kiln.db")

MODELS = ["server.models"]
MIGRATIONS = "server.migrations"


class DatabaseUnavailable(Exception):
    """The database refused the connection or cannot be reached."""


def credentials(url: str) -> dict[str, Any]:
    """``postgres://u:p@h:port/db?host=/socket`` → asyncpg/tortoise connection keywords."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.pop("host", None) or parts.hostname or "127.0.0.1"
    return {
        "host": unquote(host),
        "port": parts.port or int(query.pop("port", 5432)),
        "user": unquote(parts.username or query.pop("user", "postgres")),
        "password": unquote(parts.password or query.pop("password", "")) or None,
        "database": unquote(parts.path.lstrip("/")) or query.pop("dbname", "postgres"),
    }


def on_database(url: str, name: str) -> str:
    """The URL of database ``name`` on the server ``url`` points at (TCP or Unix socket)."""
    creds = credentials(url)
    host = creds["host"]
    if host.startswith("/"):
        return f"postgresql://{creds['user']}@/{name}?host={host}&port={creds['port']}"
    auth = creds["user"] + (f":{creds['password']}" if creds["password"] else "")
    return f"postgresql://{auth}@{host}:{creds['port']}/{name}"


def tortoise_config(url: str, *, min_size: int = 1, max_size: int = 10) -> dict[str, Any]:
    creds = credentials(url)
    creds.update(minsize=min_size, maxsize=max_size)
    return {
        "connections": {"default": {"engine": "tortoise.backends.asyncpg", "credentials": creds}},
        "apps": {
            "models": {
                "models": MODELS,
                "default_connection": "default",
                "migrations": MIGRATIONS,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# For the `tortoise` CLI (makemigrations): tortoise -c server.db.TORTOISE_ORM makemigrations
TORTOISE_ORM = tortoise_config(
    os.environ.get("KILN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kiln_dev")
)


async def _connect_check(url: str) -> None:
    try:
        conn = await asyncpg.connect(**credentials(url), timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from None
    await conn.close()


async def migrate(url: str, *, progress: bool = False) -> list[str]:
    """Apply every pending migration; return the names applied."""
    from tortoise.migrations.api.migrate import migrate as run_migrations

    await _connect_check(url)
    applied: list[str] = []

    def on_progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            applied.append(name)
            if progress:
                print(f"  applied {app_label}.{name}", flush=True)

    # A private ORM context: migrating must not re-point this process's own
    # tortoise state (a running server, the test session) at another database.
    async with _lock(url, 7_471_001), TortoiseContext():  # one migrator at a time
        await run_migrations(config=tortoise_config(url), progress=on_progress)
    return applied


def migration_names() -> list[str]:
    pkg = resources.files(MIGRATIONS)
    return sorted(
        p.name.removesuffix(".py")
        for p in pkg.iterdir()
        if p.name.endswith(".py") and p.name[:4].isdigit()
    )


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    """Migrations on disk that the database has not applied (all of them if none are)."""
    exists = await conn.fetchval("SELECT to_regclass('tortoise_migrations') IS NOT NULL")
    if not exists:
        return migration_names()
    rows = await conn.fetch("SELECT name FROM tortoise_migrations WHERE app = 'models'")
    done = {r["name"] for r in rows}
    return [n for n in migration_names() if n not in done]


@contextlib.asynccontextmanager
async def _lock(url: str, key: int) -> AsyncIterator[None]:
    conn = await asyncpg.connect(**credentials(url))
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", key)
        yield
    finally:
        await conn.close()


async def _no_session_state(_conn: asyncpg.Connection) -> None:
    """Pool release: nothing beyond asyncpg's rollback to undo (the module's invariant)."""


class Database:
    """The process's handle on PostgreSQL: tortoise initialised plus a raw pool."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pool: asyncpg.Pool | None = None

    async def open(self, *, pool_size: int = 10) -> None:
        await _connect_check(self.url)
        # global fallback: tasks started from protocol or listener callbacks see the ORM too
        await Tortoise.init(
            config=tortoise_config(self.url, max_size=pool_size), _enable_global_fallback=True
        )
        self.pool = await asyncpg.create_pool(
            **credentials(self.url),
            min_size=1,
            max_size=pool_size,
            server_settings={"timezone": "UTC"},
            reset=_no_session_state,
        )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        await Tortoise.close_connections()

    def acquire(self) -> Any:
        assert self.pool is not None, "Database.open() first"
        return self.pool.acquire()

    async def connect(self) -> asyncpg.Connection:
        """A dedicated connection (LISTEN, advisory locks held across awaits)."""
        return await asyncpg.connect(**credentials(self.url), server_settings={"timezone": "UTC"})

    async def ready(self) -> tuple[bool, str]:
        """(ok, reason) for /readyz: reachable and fully migrated."""
        try:
            async with self.acquire() as conn:
                pending = await pending_migrations(conn)
        except (OSError, asyncpg.PostgresError, AssertionError) as exc:
            return False, f"database unreachable: {exc}"
        if pending:
            return False, f"migrations pending: {', '.join(pending)}"
        return True, "ok"
