"""Run execution benchmark: Kiln's trigger-to-success time against plain ``dbt build``.

On a scratch database, with the real engine in this process (internal API,
dispatcher, monitor, local launcher starting real ``kiln worker run``
subprocesses), it measures side by side:

* ``examples/shop`` ``dbt build`` on DuckDB: wall time from ``trigger_run``
  to the run's success, against the same ``dbt build`` run directly from a
  shell in a fresh copy of the project (no JSON logs, output discarded).
  Rounds alternate Kiln and direct after one warm-up of each. The goal row
  compares the best of the rounds (other work on a shared machine only adds
  time, so the minimum is the least disturbed figure); medians, and the CPU
  each side used (Kiln: worker + dbt + this process's API and engine work),
  are reported beside it with the machine's load average. Goal: ratio <= 1.15.
* trigger to worker started (the run's status becomes running, seen through
  ``LISTEN run_events``): a job whose project does not exist, so each run
  ends right after its worker started and samples do not queue. Goal: p50
  < 1.5 s.

Where the overhead goes is in each worker's log line under
``<data-dir>/workers/<run>.log`` ("worker CPU ... s"): keep them with
``KILN_BENCH_KEEP=1``. ``KILN_BENCH_ROUNDS`` and ``KILN_BENCH_LATENCY_N``
override the number of build rounds and latency samples.

``python bench/runs.py [--quick]`` prints the rows; ``run(quick)`` returns them.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    free_port,
    pct,
    row,
    scratch_database,
)
from server import crypto  # noqa: E402
from server.config import load_settings  # noqa: E402
from server.demo import examples_dir  # noqa: E402
from server.gateway.app import PLATFORM  # noqa: E402
from server.gateway.internal import add_internal_routes  # noqa: E402
from server.launchers.base import WorkerState  # noqa: E402
from server.launchers.local import LocalRunLauncher  # noqa: E402
from server.models import (  # noqa: E402  # noqa: E402
    Account,
    Connection,
    Credentials,
    Environment,
    Job,
    Project,
    Run,
    RunStatus,
)
from server.platform import Platform  # noqa: E402
from server.runs import state  # noqa: E402
from server.runs.engine import start_engine  # noqa: E402
from server.services import runs  # noqa: E402
from server.services.actor import system_actor  # noqa: E402
from server.worker.dbt import dbt_executable  # noqa: E402

GROUP = "Runs"


class _Waiter:
    """Resolves futures when ``run_events`` says a run reached a status."""

    def __init__(self) -> None:
        self.waiting: dict[tuple[int, str], asyncio.Future[float]] = {}

    def on_event(self, *args: Any) -> None:
        ev = state.RunEvent.parse(args[3])
        key = (ev.run, "running" if ev.status == RunStatus.RUNNING else "final")
        if ev.status in (RunStatus.RUNNING,) or ev.status >= RunStatus.SUCCESS:
            fut = self.waiting.get(key)
            if fut is not None and not fut.done():
                fut.set_result(time.perf_counter())

    def expect(self, run_id: int, what: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[(run_id, what)] = fut
        return fut


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


async def _direct_build(shop: Path, work: Path, db_file: Path) -> float:
    """Plain ``dbt build`` in a fresh copy of the project, like a developer in a shell."""
    proj = work / f"direct-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    shutil.copytree(shop, proj, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    (proj / "profiles.yml").write_text(
        "shop:\n  target: prod\n  outputs:\n    prod:\n      type: duckdb\n"
        f"      path: {db_file}\n      schema: main\n      threads: 4\n"
    )
    proc = await asyncio.create_subprocess_exec(
        dbt_executable(),
        "build",
        "--profiles-dir",
        str(proj),
        "--project-dir",
        str(proj),
        "--target",
        "prod",
        cwd=str(proj),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
    )
    rc = await proc.wait()
    elapsed = time.perf_counter() - t0
    shutil.rmtree(proj, ignore_errors=True)
    if rc != 0:
        raise RuntimeError(f"direct dbt build failed with exit code {rc}")
    return elapsed


async def _seed(shop: Path, work: Path) -> tuple[int, int, int]:
    account = await Account.create(name="bench-runs", run_slots=5)
    project = await Project.create(account=account, name="shop", bundled_path=str(shop))
    conn = await Connection.create(
        account=account,
        name="duck",
        adapter_type="duckdb",
        details={"path": str(work / "kiln.duckdb")},
    )
    creds = await Credentials.create(
        account=account, project=project, adapter_type="duckdb", fields_json={"schema": "main"}
    )
    env = await Environment.create(
        account=account,
        project=project,
        name="prod",
        connection=conn,
        credentials=creds,
        target_name="prod",
    )
    build = await Job.create(
        account=account, project=project, environment=env, name="build", steps=["dbt build"]
    )
    ghost = await Project.create(account=account, name="ghost", bundled_path="/nonexistent")
    genv = await Environment.create(account=account, project=ghost, name="ghost")
    lat = await Job.create(
        account=account, project=ghost, environment=genv, name="latency", steps=["dbt build"]
    )
    return account.id, build.id, lat.id


async def run(quick: bool) -> list[dict[str, Any]]:
    from bench.common import SMOKE

    rounds = int(os.environ.get("KILN_BENCH_ROUNDS", 1 if SMOKE else 2 if quick else 5))
    n_latency = int(os.environ.get("KILN_BENCH_LATENCY_N", 3 if SMOKE else 6 if quick else 30))
    shop = examples_dir() / "shop"
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-runs-"))
    kiln_s: list[float] = []
    direct_s: list[float] = []
    latency: list[float] = []
    kiln_cpu: list[float] = []
    direct_cpu: list[float] = []
    loads: list[float] = [os.getloadavg()[0]]
    async with scratch_database() as url:
        port = free_port()
        settings = load_settings(
            {
                "KILN_DATABASE_URL": url,
                "KILN_SECRET_KEY": crypto.generate_key(),
                "KILN_DATA_DIR": str(work / "data"),
                "KILN_PORT": str(port),
            }
        )
        platform = await Platform.open(settings, apply_migrations=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app[PLATFORM] = platform
        add_internal_routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        launcher = LocalRunLauncher(settings)
        stop = await start_engine(platform, launcher=launcher)
        waiter = _Waiter()
        listener = await platform.db.connect()
        await listener.add_listener(state.CHANNEL, waiter.on_event)
        try:
            account_id, build_id, lat_id = await _seed(shop, work)
            actor = system_actor(account_id)

            async def kiln_build() -> float:
                t0 = time.perf_counter()
                r = await runs.trigger_run(actor, build_id)
                fut = waiter.expect(r.id, "final")
                await asyncio.wait_for(fut, 300)
                done = await Run.get(id=r.id)
                if done.status != RunStatus.SUCCESS:
                    raise RuntimeError(f"kiln run failed: {done.status_message}")
                await _reaped(launcher, r.id)  # so its CPU is counted in RUSAGE_CHILDREN
                return fut.result() - t0

            await kiln_build()  # warm-up: page cache, dbt imports
            await _direct_build(shop, work, work / "direct.duckdb")
            for _ in range(rounds):
                cpu0, own0 = _children_cpu(), time.process_time()
                kiln_s.append(await kiln_build())
                # worker + dbt, plus this process's share (API, dispatcher, monitor)
                kiln_cpu.append(_children_cpu() - cpu0 + time.process_time() - own0)
                cpu0 = _children_cpu()
                direct_s.append(await _direct_build(shop, work, work / "direct.duckdb"))
                direct_cpu.append(_children_cpu() - cpu0)
                loads.append(os.getloadavg()[0])

            for _ in range(n_latency):
                t0 = time.perf_counter()
                r = await runs.trigger_run(actor, lat_id)
                started = waiter.expect(r.id, "running")
                final = waiter.expect(r.id, "final")
                await asyncio.wait_for(started, 30)
                latency.append(started.result() - t0)
                await asyncio.wait_for(final, 30)
        finally:
            await listener.close()
            await stop()
            await runner.cleanup()
            await platform.close()
            if not os.environ.get("KILN_BENCH_KEEP"):
                shutil.rmtree(work, ignore_errors=True)
    k, d = min(kiln_s), min(direct_s)
    km, dm = statistics.median(kiln_s), statistics.median(direct_s)
    kc, dc = statistics.median(kiln_cpu), statistics.median(direct_cpu)
    p50 = pct(latency, 50)
    anchor = "same dbt build run directly in a shell"
    return [
        row(
            GROUP,
            f"shop dbt build on DuckDB: trigger to success, best of {len(kiln_s)}",
            "s",
            k,
            anchor=d,
            anchor_name=anchor,
            goal="ratio <= 1.15",
            met=k / d <= 1.15,
        ),
        row(
            GROUP,
            "shop dbt build on DuckDB: trigger to success, median",
            "s",
            km,
            anchor=dm,
            anchor_name=anchor,
            goal="report",
        ),
        row(
            GROUP,
            "shop dbt build: CPU per run (worker, dbt, API share)",
            "s",
            kc,
            anchor=dc,
            anchor_name=f"{anchor} (dbt)",
            goal="report",
        ),
        row(GROUP, "Kiln wall overhead per run (best-of difference)", "s", k - d, goal="report"),
        row(
            GROUP,
            "trigger to worker started, p50",
            "s",
            p50,
            goal="< 1.5 s",
            met=p50 < 1.5,
        ),
        row(GROUP, "trigger to worker started, p90", "s", pct(latency, 90), goal="report"),
        row(
            GROUP,
            "machine load average (1 min) during the builds, max",
            "",
            max(loads),
            goal="report (2 cores shared: figures swing with it)",
        ),
    ]


async def _reaped(launcher: LocalRunLauncher, run_id: int) -> None:
    """Wait until the run's worker exited (check_health reaps it: its CPU then counts)."""
    handle = (await Run.get(id=run_id)).worker_handle
    for _ in range(200):
        if (await launcher.check_health(run_id, handle)).state != WorkerState.RUNNING:
            return
        await asyncio.sleep(0.05)



if __name__ == "__main__":
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    result = asyncio.run(run(quick="--quick" in sys.argv))
    for r in result:
        print(json.dumps(r))
