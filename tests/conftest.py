"""Shared fixtures: a real PostgreSQL database per test session, platform, object stores.

The database server is the one at KILN_TEST_DATABASE_URL (default: the local
PostgreSQL on 127.0.0.1:5432); when none is reachable an embedded server is
started under a temporary directory, so the suite also runs on a fresh laptop.
Each session creates its own databases and drops them at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from server import crypto
from server.config import load_settings
from server.db import credentials, migrate, on_database

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


def run_sync(coro):
    """Run a coroutine to completion from sync code, even when a loop is running here."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()


def _reachable(url: str) -> bool:
    async def probe() -> None:
        conn = await asyncpg.connect(**credentials(url), timeout=3)
        await conn.close()

    try:
        run_sync(probe())
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a maintenance database on a PostgreSQL server the tests may create databases on."""
    url = os.environ.get("KILN_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if _reachable(url):
        yield url
        return
    from server import embedded_pg

    tmp = Path(tempfile.mkdtemp(prefix="kiln-test-pg-"))
    pg = embedded_pg.start(tmp)
    yield pg.url.replace(f"/{embedded_pg.DATABASE}?", "/postgres?")
    pg.release()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def make_database(pg_server_url: str) -> Iterator[Callable[[], str]]:
    """Factory: a new empty database on the test server; all are dropped at session end."""
    created: list[str] = []

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(**credentials(pg_server_url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def make() -> str:
        name = f"kiln_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        run_sync(admin(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return on_database(pg_server_url, name)

    yield make
    for name in created:
        try:
            run_sync(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except Exception:
            pass


@pytest.fixture(scope="session")
def db_url(make_database: Callable[[], str]) -> str:
    """A migrated database shared by the session's tests."""
    url = make_database()
    run_sync(migrate(url))
    return url


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kiln-data")


@pytest.fixture(scope="session")
def settings(db_url: str, data_dir: Path):
    env = {
        "KILN_DATABASE_URL": db_url,
        "KILN_DATA_DIR": str(data_dir),
        "KILN_SECRET_KEY": crypto.generate_key(),
    }
    return load_settings(env)


@pytest.fixture(scope="session")
async def platform(settings) -> AsyncIterator[object]:
    """The core platform on the session database (tortoise initialised)."""
    from server.platform import Platform

    p = await Platform.open(settings, apply_migrations=False)
    yield p
    await p.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3-compatible HTTP server (moto's server mode) in a subprocess."""
    port = free_port()
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto_server did not start")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)
