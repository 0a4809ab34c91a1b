"""Helpers shared by the benchmarks: rows, percentiles, a throwaway database."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from server.db import credentials, migrate, on_database

# the suite's smoke test: the smallest loads that still produce every row
SMOKE = os.environ.get("KILN_BENCH_SMOKE") == "1"

SERVER_URL = os.environ.get(
    "KILN_BENCH_DATABASE_URL",
    os.environ.get("KILN_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
)


def row(
    group: str,
    metric: str,
    unit: str,
    kiln: float | None,
    *,
    anchor: float | None = None,
    anchor_name: str | None = None,
    goal: str = "",
    higher_is_better: bool = False,
    met: bool | None = None,
) -> dict[str, Any]:
    ratio = None
    if kiln is not None and anchor:
        ratio = kiln / anchor
    return {
        "group": group,
        "metric": metric,
        "unit": unit,
        "kiln": kiln,
        "anchor": anchor,
        "anchor_name": anchor_name,
        "ratio": ratio,
        "goal": goal,
        "met": met,
        "higher_is_better": higher_is_better,
    }


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """A migrated database that is dropped afterwards."""
    name = f"kiln_bench_{uuid.uuid4().hex[:10]}"
    creds = credentials(SERVER_URL)
    admin = await asyncpg.connect(**creds)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = on_database(SERVER_URL, name)
    try:
        await migrate(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def free_port() -> int:
    """A loopback port free right now (for a server the bench starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_sync(coro: Any) -> Any:
    return asyncio.run(coro)
