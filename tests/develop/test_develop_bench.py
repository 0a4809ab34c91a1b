"""Warm compile/preview versus the dbt CLI (measured and printed, not asserted).

Runs only with KILN_DEVELOP_BENCH=1:
    KILN_DEVELOP_BENCH=1 pytest tests/develop/test_develop_bench.py -s
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import pytest

from .helpers import Project, RpcClient, dbt_cli

pytestmark = pytest.mark.skipif(
    os.environ.get("KILN_DEVELOP_BENCH") != "1", reason="benchmark: set KILN_DEVELOP_BENCH=1"
)

SQL = "select * from {{ ref('customer_totals') }}"
WARM_ROUNDS = 20
CLI_ROUNDS = 3


async def _p50(client: RpcClient, method: str, **params: object) -> float:
    await client.call(method, **params)  # the first call may still wait for the initial parse
    times = []
    for _ in range(WARM_ROUNDS):
        started = time.perf_counter()
        await client.call(method, **params)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _cli(project: Project, *args: str) -> float:
    times = []
    for _ in range(CLI_ROUNDS):
        started = time.perf_counter()
        proc = dbt_cli(project, *args)
        times.append(time.perf_counter() - started)
        assert proc.returncode == 0, proc.stdout[-2000:]
    return statistics.median(times)


async def test_warm_versus_cli(client: RpcClient, project: Project) -> None:
    compile_warm = await _p50(client, "dbt.compile", sql=SQL)
    compile_path = await _p50(client, "dbt.compile", path="analytics/models/customer_totals.sql")
    preview_warm = await _p50(client, "dbt.preview", sql=SQL, limit=100)
    await asyncio.sleep(3)  # the idle warm runner lets go of the DuckDB file
    compile_cli = _cli(project, "compile", "--inline", SQL)
    show_cli = _cli(project, "show", "--inline", SQL, "--limit", "100")
    print(
        f"\nwarm dbt.compile sql  p50 {compile_warm * 1000:7.0f} ms"
        f"\nwarm dbt.compile path p50 {compile_path * 1000:7.0f} ms"
        f"\nCLI  dbt compile --inline  {compile_cli * 1000:7.0f} ms (median of {CLI_ROUNDS})"
        f"  -> {compile_cli / compile_warm:.0f}x"
        f"\nwarm dbt.preview      p50 {preview_warm * 1000:7.0f} ms"
        f"\nCLI  dbt show --inline     {show_cli * 1000:7.0f} ms (median of {CLI_ROUNDS})"
        f"  -> {show_cli / preview_warm:.0f}x"
    )
