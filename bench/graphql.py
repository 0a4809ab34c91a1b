"""GraphQL benchmark: the runs list over 10,000 runs, against bare strawberry and Dagster.

The query (8 concurrent clients, keep-alive HTTP, POST)::

    { runs(first: 50) { edges { node { id status statusCode
        job { name environment { name } } steps { name status } } } } }

One run on this machine measures, side by side:

* Kiln: the real gateway app (``server.gateway.app.build_app`` on a Platform) in
  its own process, over a fresh PostgreSQL database (127.0.0.1:5432) seeded
  with 10,000 runs of one account (3 steps each; 5 jobs in 2 environments)
  plus 2,000 runs of another account: requests/s, p50, p99, and SQL
  statements per request, counted in the server process by wrapping
  asyncpg's ``Connection`` (``bench.sqlcount``: both pools, every round trip
  including BEGIN/COMMIT and any reset on release: Kiln's raw pool sends none,
  see ``server.db``). The token's lookup is remembered for 5 s
  (``server.services.auth``), so in steady state a request sends the page and
  one statement per relation; a cold
  token adds its lookup;
* the ceiling of strawberry itself: the same query shape served by the same
  aiohttp/strawberry view with the same parser and validation caches, over
  50 in-memory objects with plain attributes (no database, no auth);
* ``kiln gateway --workers N`` itself: N gateway processes on one port
  (SO_REUSEPORT), the IDE front included;
* Dagster's webserver listing 50 of 10,000 runs (status, job name, tags; no
  step stats or times, which it resolves run by run: see
  ``bench.dagster.RUN_LIST_QUERY``) on its default SQLite storage, measured
  in the same rounds in full mode; quick mode shows the figure recorded on
  this kind of machine (47 req/s, p50 155 ms).

Every server and the load generator are separate processes (on uvloop), so
the client never steals the server's loop. Rounds alternate bare/Kiln and the
medians are reported. ``python -m bench.graphql [--quick]`` prints the table;
``run(quick)`` returns the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import free_port, row, scratch_database

ROOT = Path(__file__).resolve().parents[1]
GROUP = "GraphQL"
QUERY = (
    "{ runs(first: 50) { edges { node { id status statusCode "
    "job { name environment { name } } steps { name status } } } } }"
)
DAGSTER_RPS = 47.0  # recorded here: Dagster 1.13 webserver, 50 runs, 8 clients
DAGSTER_P50_MS = 155.0
CLIENTS = 8


def _uvloop_run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(coro)


async def _until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# ------------------------------------------------------------------ database


_SEED = """
WITH a AS (INSERT INTO account (name, run_slots, created_at, updated_at)
           VALUES ($1, 5, now(), now()) RETURNING id),
p AS (INSERT INTO project (account_id, name, description, subdirectory, default_branch,
                           bundled_path, created_at, updated_at)
      SELECT id, 'shop', '', '', 'main', '/srv/shop', now(), now() FROM a RETURNING id, account_id)
SELECT p.id AS project_id, p.account_id FROM p
"""


async def _seed_account(conn: Any, name: str, runs: int) -> int:
    row = await conn.fetchrow(_SEED, name)
    account, project = row["account_id"], row["project_id"]
    envs = [
        await conn.fetchval(
            "INSERT INTO environment (account_id, project_id, name, kind, dbt_version,"
            " target_name, threads, created_at, updated_at)"
            " VALUES ($1, $2, $3, 'deployment', '1.11', 'prod', 4, now(), now()) RETURNING id",
            account,
            project,
            env_name,
        )
        for env_name in ("Production", "Staging")
    ]
    jobs = [
        await conn.fetchval(
            "INSERT INTO job (account_id, project_id, environment_id, name, description, steps,"
            " generate_docs, run_freshness, timeout_seconds, priority, timezone, catchup,"
            " catchup_cap, trigger_statuses, triggers, created_at, updated_at)"
            ' VALUES ($1, $2, $3, $4, \'\', \'["dbt seed", "dbt run", "dbt test"]\', false,'
            " false, 0, 0, 'UTC', 'latest', 1, '[]', '{}', now(), now()) RETURNING id",
            account,
            project,
            envs[i % 2],
            f"job-{i}",
        )
        for i in range(5)
    ]
    await conn.execute(
        "INSERT INTO run (account_id, project_id, environment_id, job_id, status, trigger_kind,"
        " cause, steps_spec, overrides, timeout_seconds, priority, attempt, created_at,"
        " updated_at, dequeued_at, started_at, finished_at, artifacts_saved, logs_archived,"
        " log_seq)"
        " SELECT $1, $2, j.environment_id, j.id,"
        "  (ARRAY[10, 10, 10, 20, 30])[1 + g % 5], 'schedule', 'Triggered by schedule',"
        "  '[]', '{}', 0, 0, 1, now() - g * interval '1 minute', now(),"
        "  now() - g * interval '1 minute', now() - g * interval '1 minute',"
        "  now() - g * interval '1 minute' + interval '30 seconds', false, false, 0"
        " FROM generate_series(1, $3) AS g"
        " JOIN job j ON j.id = ($4::bigint[])[1 + g % 5]",
        account,
        project,
        runs,
        jobs,
    )
    await conn.execute(
        "INSERT INTO run_step (account_id, run_id, index, name, kind, command, status,"
        " created_at, updated_at)"
        " SELECT r.account_id, r.id, s.i, s.name, 'dbt', s.name, r.status, now(), now()"
        " FROM run r CROSS JOIN (VALUES (1, 'dbt seed'), (2, 'dbt run'), (3, 'dbt test'))"
        " AS s(i, name) WHERE r.account_id = $1",
        account,
    )
    return account


async def _seed(url: str) -> str:
    """Two accounts of runs; returns a viewer token of the big one."""
    import asyncpg

    from server import crypto
    from server.db import credentials

    conn = await asyncpg.connect(**credentials(url))
    try:
        tag = uuid.uuid4().hex[:6]
        account = await _seed_account(conn, f"bench-{tag}", 10_000)
        await _seed_account(conn, f"other-{tag}", 2_000)
        secret = crypto.new_token("api")
        await conn.execute(
            "INSERT INTO api_token (account_id, name, kind, role, token_hash, prefix, created_at)"
            " VALUES ($1, 'bench', 'service', 'viewer', $2, $3, now())",
            account,
            crypto.hash_token(secret),
            secret[:10],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return secret


# ------------------------------------------------------------------ servers


async def _serve_kiln(url: str, port: int, pool: int) -> None:
    from aiohttp import web

    from bench import sqlcount
    from server import crypto
    from server.config import load_settings
    from server.gateway.app import build_app
    from server.heap import settle as settle_heap
    from server.platform import Platform

    sqlcount.install()
    data_dir = Path(tempfile.mkdtemp(prefix="kiln-bench-"))
    settings = load_settings(
        {
            "KILN_DATABASE_URL": url,
            "KILN_DATA_DIR": str(data_dir),
            "KILN_SECRET_KEY": crypto.generate_key(),
        }
    )
    platform = await Platform.open(settings, apply_migrations=False, pool_size=pool)
    app = build_app(platform)
    settle_heap()  # as run_server does once started

    async def count(_request: web.Request) -> web.Response:
        return web.json_response({"statements": sqlcount.total(), "cpu": time.process_time()})

    app.router.add_get("/bench/sqlcount", count)
    await _run_app(app, port)
    await platform.close()


async def _serve_bare(port: int) -> None:
    from aiohttp import web
    from strawberry.aiohttp.views import GraphQLView

    from bench.graphql_bare import schema

    app = web.Application()
    app.router.add_route("*", "/graphql", GraphQLView(schema=schema, graphql_ide=None))

    async def cpu(_request: web.Request) -> web.Response:
        return web.json_response({"statements": 0, "cpu": time.process_time()})

    app.router.add_get("/bench/sqlcount", cpu)
    await _run_app(app, port)


async def _run_app(app: Any, port: int) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_port=True)
    await site.start()
    print(f"READY {port}", flush=True)
    try:
        await _until_stdin_closes()
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------ load generator


async def _load(
    port: int,
    token: str,
    seconds: float,
    clients: int,
    *,
    dagster: bool = False,
    counters: bool = True,
) -> dict[str, Any]:
    """Requests/s and latencies of ``clients`` keep-alive clients for ``seconds``; with
    ``dagster``, Dagster's run list instead of Kiln's. Server-side counters (SQL, CPU)
    come from ``bench.graphql``'s own servers only."""
    counters = counters and not dagster
    import aiohttp

    from bench.dagster import RUN_LIST_QUERY

    url = f"http://127.0.0.1:{port}/graphql"
    body = json.dumps({"query": RUN_LIST_QUERY if dagster else QUERY}).encode()
    expect = b"results" if dagster else b"edges"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> bool:
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                payload = await resp.read()
            ok = resp.status == 200 and b'"errors"' not in payload and expect in payload
            if ok:
                latencies.append(time.perf_counter() - t0)
            return ok

        for _ in range(clients * 3):  # warm up: connections, caches
            if not await one():
                raise RuntimeError("the server answered with an error")
        latencies.clear()
        counters_url = f"http://127.0.0.1:{port}/bench/sqlcount"
        before = after = {"statements": 0, "cpu": 0.0}
        if counters:
            async with session.get(counters_url) as r:
                before = await r.json()
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()

        async def client() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                if not await one():
                    failures += 1

        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
        if counters:
            async with session.get(counters_url) as r:
                after = await r.json()
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "failures": failures,
        "rps": n / elapsed,
        "p50_ms": latencies[n // 2] * 1000 if n else 0.0,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
        # the sqlcount requests themselves send no SQL
        "statements": (after["statements"] - before["statements"]) / max(n, 1),
        "server_cpu_ms": (after["cpu"] - before["cpu"]) / max(n, 1) * 1000,
    }


# ------------------------------------------------------------------ orchestration


class _Proc:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def stop(self) -> None:
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    self.proc.stdin.close()
            else:
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def _spawn_gateway(url: str, port: int, workers: int) -> _Proc:
    """The real ``kiln gateway --workers N`` (IDE front, broker, log hub and all)."""
    from server import crypto

    env = {**os.environ, "KILN_SECRET_KEY": crypto.generate_key()}
    data_dir = tempfile.mkdtemp(prefix="kiln-bench-gateway-")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "gateway",
        *("--workers", str(workers), "--port", str(port)),
        *("--database-url", url, "--data-dir", data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=str(ROOT),
        env=env,
    )
    assert proc.stdout is not None
    while line := await asyncio.wait_for(proc.stdout.readline(), 120):
        if line.startswith(b"Kiln is ready at"):
            return _Proc(proc)
    await proc.wait()
    raise RuntimeError(f"kiln gateway --workers {workers} did not start ({proc.returncode})")


async def _spawn(*args: str) -> _Proc:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.graphql",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line.startswith(b"READY"):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise RuntimeError(f"bench.graphql {args[0]} did not start: {line!r}")
    return _Proc(proc)


async def _measure(
    port: int, token: str, seconds: float, *, dagster: bool = False, counters: bool = True
) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.graphql",
        "--load",
        "--port",
        str(port),
        "--token",
        token,
        "--seconds",
        str(seconds),
        *(["--dagster"] if dagster else []),
        *([] if counters else ["--no-counters"]),
        stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode})")
    return json.loads(out.decode().strip().splitlines()[-1])


def _row(
    metric: str,
    unit: str,
    kiln: float,
    anchor: float | None,
    anchor_name: str | None,
    goal: str,
    met: bool | None,
) -> dict[str, Any]:
    return row(
        GROUP, metric, unit, kiln, anchor=anchor, anchor_name=anchor_name, goal=goal, met=met
    )


async def run(quick: bool) -> list[dict[str, Any]]:
    """Measure and return the table rows (see the module docstring)."""
    from bench.common import SMOKE

    rounds = 1 if SMOKE else 2 if quick else 5
    seconds = 1.0 if SMOKE else 4.0 if quick else 10.0
    from bench.dagster import DagsterRunList, serve_run_list

    # Dagster is installed and measured in full mode only (minutes to install and seed)
    dagster_server: DagsterRunList | None = None
    kiln: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    multi: list[dict[str, Any]] = []
    dagster: list[dict[str, Any]] = []
    loads = [os.getloadavg()[0]]
    workers = max(2, min(4, os.cpu_count() or 2))
    try:
        if not quick and not SMOKE:
            print("   starting Dagster's webserver over 10,000 runs", file=sys.stderr)
            dagster_server = await serve_run_list(10_000, free_port())
        async with scratch_database() as url:
            procs: list[_Proc] = []
            try:
                token = await _seed(url)
                kiln_port, bare_port, multi_port = free_port(), free_port(), free_port()
                procs.append(await _spawn("--serve", "--db", url, "--port", str(kiln_port)))
                procs.append(await _spawn("--serve-bare", "--port", str(bare_port)))
                procs.append(await _spawn_gateway(url, multi_port, workers))
                for _ in range(rounds):  # interleaved: a busy moment of the machine hits all
                    bare.append(await _measure(bare_port, token, seconds))
                    kiln.append(await _measure(kiln_port, token, seconds))
                    multi.append(await _measure(multi_port, token, seconds, counters=False))
                    if dagster_server is not None:
                        d = await _measure(dagster_server.port, "", seconds, dagster=True)
                        dagster.append(d)
                    loads.append(os.getloadavg()[0])
            finally:
                for p in procs:
                    await p.stop()
    finally:
        if dagster_server is not None:
            await dagster_server.stop()

    def med(results: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in results)

    k_rps, b_rps, m_rps = med(kiln, "rps"), med(bare, "rps"), med(multi, "rps")
    k_p50, k_p99 = med(kiln, "p50_ms"), med(kiln, "p99_ms")
    statements = med(kiln, "statements")
    bare_name = "bare strawberry, same query in memory (same run)"
    if dagster:
        d_rps, d_p50 = med(dagster, "rps"), med(dagster, "p50_ms")
        d_name = "Dagster 1.13 webserver, SQLite, 50 of 10,000 runs (same run)"
    else:
        d_rps, d_p50 = DAGSTER_RPS, DAGSTER_P50_MS
        d_name = "Dagster webserver (recorded here)"
    return [
        _row(
            "runs(first: 50), 8 clients",
            "req/s",
            k_rps,
            d_rps,
            d_name,
            "≥ 3x Dagster",
            k_rps >= 3 * d_rps,
        ),
        _row(
            "runs(first: 50), 8 clients",
            "req/s",
            k_rps,
            b_rps,
            bare_name,
            "≥ 0.8x bare strawberry",
            k_rps >= 0.8 * b_rps,
        ),
        _row(
            "runs(first: 50) p50, 8 clients",
            "ms",
            k_p50,
            d_p50,
            d_name,
            "report",
            None,
        ),
        _row(
            "runs(first: 50) p50, 8 clients",
            "ms",
            k_p50,
            med(bare, "p50_ms"),
            bare_name,
            "report",
            None,
        ),
        _row(
            "runs(first: 50) p99, 8 clients",
            "ms",
            k_p99,
            med(bare, "p99_ms"),
            bare_name,
            "report",
            None,
        ),
        _row(
            "SQL statements per request",
            "statements",
            statements,
            None,
            None,
            "constant: page + 3 relations = 4",
            statements <= 4.05,
        ),
        _row(
            "server CPU per request",
            "ms",
            med(kiln, "server_cpu_ms"),
            med(bare, "server_cpu_ms"),
            bare_name,
            "report",
            None,
        ),
        _row(
            f"runs(first: 50), kiln gateway --workers {workers}",
            "req/s",
            m_rps,
            k_rps,
            "Kiln, 1 gateway process",
            f"report ({os.cpu_count()} cores, shared with PostgreSQL and the load generator)",
            None,
        ),
        _row(
            f"runs(first: 50), kiln gateway --workers {workers}",
            "req/s",
            m_rps,
            d_rps,
            d_name,
            "≥ 3x Dagster",
            m_rps >= 3 * d_rps,
        ),
        _row(
            "machine load average (1 min) during the rounds, median",
            "runnable",
            statistics.median(loads),
            float(os.cpu_count() or 1),
            "CPU cores",
            "report: above the core count, other processes shared the CPUs",
            None,
        ),
    ]


def _print(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else ""
        anchor = f"{r['anchor']} ({r['anchor_name']})" if r["anchor"] is not None else ""
        met = {True: "met", False: "NOT met", None: ""}[r["met"]]
        print(
            f"{r['metric']:<50} {r['kiln']:>9} {r['unit']:<10} {anchor:<60} {ratio:>7}"
            f"  {r['goal']} {met}"
        )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.graphql")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--serve", action="store_true", help="(internal) a Kiln gateway")
    p.add_argument("--serve-bare", action="store_true", help="(internal) bare strawberry")
    p.add_argument("--load", action="store_true", help="(internal) the load generator")
    p.add_argument("--db")
    p.add_argument("--port", type=int)
    p.add_argument("--pool", type=int, default=10)
    p.add_argument("--token", default="")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--dagster", action="store_true", help="(internal) load Dagster's run list")
    p.add_argument("--no-counters", action="store_true", help="(internal) a server without them")
    args = p.parse_args()
    if args.serve:
        _uvloop_run(_serve_kiln(args.db, args.port, args.pool))
    elif args.serve_bare:
        _uvloop_run(_serve_bare(args.port))
    elif args.load:
        load = _load(
            args.port,
            args.token,
            args.seconds,
            CLIENTS,
            dagster=args.dagster,
            counters=not args.no_counters,
        )
        print(json.dumps(_uvloop_run(load)))
    else:
        _print(asyncio.run(run(args.quick)))


if __name__ == "__main__":
    main()
