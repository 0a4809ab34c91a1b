"""Live logs benchmark: emit→receive latency with 1, 100 and 1,000 websocket subscribers.

Set-up (every part in its own process, on loopback):

* the API: one Kiln gateway process (uvloop, as ``kiln up`` runs) on a
  scratch database: the worker's ingest endpoint and ``/graphql`` websockets;
* the emitter (its own process): a synthetic run that posts a batch of 10 lines
  (~3.4 KB) every 100 ms to ``/internal/runs/<id>/logs`` with its run token,
  exactly as a worker does; each line carries its emit time (wall clock, ns);
* subscribers: N ``graphql-transport-ws`` connections to ``runLogs``, spread
  over several processes; each records, per frame, receive time minus the
  emit time of its lines.

Reported: p50/p99 latency at N = 1, 100, 1,000; the API's CPU at 1,000; its
memory per idle subscriber (RSS growth over 1,000 idle subscriptions); the
maximum sustained ingest rate of one API process (1,000-line batches from
another process, 4 in flight).

Quick mode: one round of 6 s per N. Full mode: three rounds of 20 s, the
round with the median p99 reported, and Dagster measured alongside. The
bench raises its own priority when it may (other work on a shared machine
disturbs it less; PostgreSQL keeps its priority) and reports how much of the
machine other processes used meanwhile.

Anchors: Dagster's live logs on SQLite, measured on this machine (14 ms p50,
27 ms p99 for one subscriber, one frame per line, recorded on this kind of machine; ``--full``
re-measures it when ``dagster`` and ``dagster-webserver`` are importable, else
the recorded figures are shown and named so); Dagster on PostgreSQL polls
every 250 ms (backing off to 16 s); strawberry's default subscription path
measured with a prototype (per-subscriber execution: p99 173 ms at 100, p50
500 ms / p99 1,350 ms at 1,000).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.common import free_port
from bench.dagster import start_harness

GROUP = "Live logs"
ROOT = Path(__file__).resolve().parents[1]
LINES_PER_BATCH = 10
BATCH_INTERVAL = 0.1
FILLER = "x" * 300
QUERY = (
    "subscription L($run: ID!, $after: Int) { runLogs(runId: $run, after: $after) "
    "{ cursor done lines { seq step ts level message eventName nodeId } } }"
)
DAGSTER_SQLITE = (14.0, 27.0)  # p50, p99 ms, one subscriber (recorded here)
DAGSTER_PG_POLL_MS = 250.0
STRAWBERRY_DEFAULT = {100: (None, 173.0), 1000: (500.0, 1350.0)}  # (p50, p99) ms



# -- the API process -------------------------------------------------------------------


def bench_app(platform: Any) -> Any:
    """The gateway's app; if /graphql websockets are not yet wired to Kiln's transport,
    mount it the way the gateway does."""
    from aiohttp import web

    from server.gateway import graphql as gw
    from server.gateway.app import build_app

    if getattr(gw, "WS_TRANSPORT", None) == "kiln":
        return build_app(platform)
    from graph.mutations import Mutation
    from graph.schema import NODE_TYPES, KilnSchema, Query
    from graph.subscriptions import Subscription
    from server.gateway.app import PLATFORM
    from server.gateway.graphql_ws import handle_ws, kiln_context, kiln_options
    from server.gateway.internal import add_internal_routes
    from server.gateway.logs_download import add_logs_download_routes

    schema = KilnSchema(query=Query, mutation=Mutation, subscription=Subscription, types=NODE_TYPES)
    options = kiln_options()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[PLATFORM] = platform
    app.router.add_get("/healthz", lambda _r: web.json_response({"status": "ok"}))
    add_internal_routes(app)
    add_logs_download_routes(app)

    async def ws(request: web.Request) -> web.StreamResponse:
        return await handle_ws(request, schema, kiln_context, options)

    app.router.add_get("/graphql", ws)
    return app


async def _serve(db: str, port: int, data_dir: str, key: str) -> None:
    from aiohttp import web

    from server.config import load_settings
    from server.logs.hub import stop_hubs
    from server.platform import Platform

    settings = load_settings(
        {"KILN_DATABASE_URL": db, "KILN_DATA_DIR": data_dir, "KILN_SECRET_KEY": key}
    )
    platform = await Platform.open(settings, apply_migrations=False, pool_size=20)
    runner = web.AppRunner(bench_app(platform), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await stop_hubs(platform)
    await runner.cleanup()
    await platform.close()


# -- subscriber processes ----------------------------------------------------------------


async def _readable(pipe: Connection, event: asyncio.Event) -> None:
    """Wait until ``pipe`` has a message; the pipe stays blocking for send/recv (uvloop
    makes a watched fd non-blocking, and a large send would then fail half-way)."""
    loop = asyncio.get_running_loop()
    loop.add_reader(pipe.fileno(), event.set)
    try:
        await event.wait()
    finally:
        loop.remove_reader(pipe.fileno())
        os.set_blocking(pipe.fileno(), True)


def _subscriber_main(url: str, token: str, run: str, n: int, pipe: Connection) -> None:
    import uvloop

    uvloop.run(_subscribers(url, token, run, n, pipe))


async def _subscribers(url: str, token: str, run: str, n: int, pipe: Connection) -> None:
    import aiohttp

    lat = array("d")
    frames = [0]
    recording = [False]
    stop = asyncio.Event()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def one() -> None:
        ws = await session.ws_connect(url, protocols=["graphql-transport-ws"], max_msg_size=0)
        sockets.append(ws)
        await ws.send_str(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        await ws.receive()  # ack
        await ws.send_str(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": QUERY, "variables": {"run": run, "after": None}},
                }
            )
        )

    cursors: dict[int, int] = {}

    async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
        key = id(ws)
        cursors[key] = 0
        async for msg in ws:
            data = msg.data
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            i = data.find('"message":"t=')
            if i < 0:
                if '"ping"' in data:
                    await ws.send_str('{"type":"pong"}')
                continue
            now = time.time_ns()
            j = data.find(" ", i + 13)
            c = data.find('"cursor":')
            cursors[key] = int(data[c + 9 : data.find(",", c)])
            if recording[0]:
                lat.append((now - int(data[i + 13 : j])) / 1e6)
                frames[0] += 1

    for start in range(0, n, 50):
        await asyncio.gather(*(one() for _ in range(min(50, n - start))))
    readers = [asyncio.create_task(read(ws)) for ws in sockets]
    pipe.send("ready")
    await _readable(pipe, stop)
    cmd = pipe.recv()
    if cmd == "record":
        recording[0] = True
        stop.clear()
        await _readable(pipe, stop)
        last = pipe.recv()  # the last seq emitted: wait (bounded) until every socket has it
        for _ in range(300):  # at most 15 s
            if min(cursors.values()) >= last:
                break
            await asyncio.sleep(0.05)
        recording[0] = False
    complete = sum(1 for c in cursors.values() if c >= last)
    pipe.send((lat.tobytes(), frames[0], complete))
    for r in readers:
        r.cancel()
    for ws in sockets:
        await ws.close()
    await session.close()


# -- the ingest load generator ------------------------------------------------------------


def _ingest_main(url: str, runs: list[tuple[int, str]], seconds: float, pipe: Connection) -> None:
    import uvloop

    pipe.send(uvloop.run(_ingest(url, runs, seconds)))


async def _ingest(url: str, runs: list[tuple[int, str]], seconds: float) -> tuple[int, float]:
    import aiohttp

    ts = datetime.now(UTC).isoformat()
    sent = 0
    async with aiohttp.ClientSession() as session:

        async def worker(run_id: int, token: str, deadline: float) -> None:
            nonlocal sent
            seq = 0
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            while time.monotonic() < deadline:
                lines = [
                    {
                        "seq": seq + k + 1,
                        "step": 1,
                        "ts": ts,
                        "level": "info",
                        "message": f"12:00:00  1 of 9 START sql table model main.orders {seq + k}",
                        "eventName": "LogStartLine",
                        "nodeId": "model.shop.orders",
                    }
                    for k in range(1000)
                ]
                body = json.dumps({"lines": lines})
                async with session.post(
                    f"{url}/internal/runs/{run_id}/logs", data=body, headers=headers
                ) as r:
                    assert r.status == 200, await r.text()
                seq += 1000
                sent += 1000

        t0 = time.monotonic()
        await asyncio.gather(*(worker(r, t, t0 + seconds) for r, t in runs))
        return sent, time.monotonic() - t0


# -- the driver -----------------------------------------------------------------------------


class _Api:
    def __init__(self, db: str) -> None:
        from server import crypto

        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = crypto.generate_key()
        self.data_dir = tempfile.mkdtemp(prefix="kiln-bench-logs-")
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.logs",
                "serve",
                "--db",
                self.db,
                "--port",
                str(self.port),
                "--data-dir",
                self.data_dir,
                "--key",
                self.key,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the API did not start: {line!r}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def _seed(api: _Api, runs: int) -> tuple[str, list[tuple[int, str, str]]]:
    """A tenant and ``runs`` running runs with worker tokens: (user token, [(id, gid, token)])."""
    from server import crypto
    from server.config import load_settings
    from server.ids import to_global_id
    from server.models import Environment, Job, Project, Run, RunStatus
    from server.platform import Platform
    from server.services import accounts

    settings = load_settings(
        {"KILN_DATABASE_URL": api.db, "KILN_DATA_DIR": api.data_dir, "KILN_SECRET_KEY": api.key}
    )
    platform = await Platform.open(settings, apply_migrations=False)
    try:
        account = await accounts.create_account(f"bench-{secrets.token_hex(4)}")
        project = await Project.create(account=account, name="shop", bundled_path="/nonexistent")
        env = await Environment.create(account=account, project=project, name="prod")
        job = await Job.create(
            account=account, project=project, environment=env, name="build", steps=["dbt build"]
        )
        issued = await accounts.create_token(account, name="bench", role="viewer")
        out = []
        for _ in range(runs):
            token = secrets.token_urlsafe(24)
            run = await Run.create(
                account=account,
                project=project,
                environment=env,
                job=job,
                status=RunStatus.RUNNING,
                started_at=datetime.now(UTC),
                worker_token_hash=crypto.hash_token(token),
            )
            out.append((run.id, to_global_id("Run", run.id), token))
        return issued.secret, out
    finally:
        await platform.close()


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]
    return (sum(values) - idle) / ticks, sum(values) / ticks


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def _emitter_main(
    url: str, run_id: int, token: str, seconds: float, per_batch: int, pipe: Connection
) -> None:
    """The synthetic run, in its own process (uvloop, like the API)."""
    import uvloop

    pipe.send(uvloop.run(_emit(url, run_id, token, seconds, per_batch)))


async def _emit(url: str, run_id: int, token: str, seconds: float, per_batch: int) -> int:
    """Post ``per_batch`` lines every BATCH_INTERVAL for ``seconds``; returns the batches."""
    import aiohttp

    loop = asyncio.get_running_loop()
    seq = 0
    n = 0
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        start = loop.time()
        while loop.time() - start < seconds:
            target = start + n * BATCH_INTERVAL
            delay = target - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            stamp = time.time_ns()
            ts = datetime.now(UTC).isoformat()
            lines = []
            for _ in range(per_batch):
                seq += 1
                lines.append(
                    {
                        "seq": seq,
                        "step": 1,
                        "ts": ts,
                        "level": "info",
                        "message": f"t={stamp} {FILLER}",
                        "eventName": "LogLine",
                        "nodeId": "model.shop.orders",
                    }
                )
            async with session.post(
                f"{url}/internal/runs/{run_id}/logs", json={"lines": lines}, headers=headers
            ) as r:
                assert r.status == 200
            n += 1
    return n


async def _wait(pipe: Connection) -> Any:
    """The next message on ``pipe`` without blocking the loop."""
    await _readable(pipe, asyncio.Event())
    return pipe.recv()


async def _phase(
    api: _Api, user_token: str, run: tuple[int, str, str], n: int, seconds: float, per_batch: int
) -> dict[str, Any]:
    import psutil

    run_id, gid, token = run
    proc = psutil.Process(api.proc.pid)  # type: ignore[union-attr]
    rss0 = proc.memory_info().rss
    ctx = mp.get_context("spawn")
    per = max(1, min(250, (n + 3) // 4)) if n > 1 else 1
    groups = [min(per, n - i) for i in range(0, n, per)]
    pipes, procs = [], []
    ws_url = api.url.replace("http", "ws", 1) + "/graphql"
    for size in groups:
        ours, theirs = ctx.Pipe()
        p = ctx.Process(target=_subscriber_main, args=(ws_url, user_token, gid, size, theirs))
        p.start()
        pipes.append(ours)
        procs.append(p)
    for pipe in pipes:
        assert await _wait(pipe) == "ready"
    await asyncio.sleep(1.0)
    rss_idle = proc.memory_info().rss
    for pipe in pipes:
        pipe.send("record")
    await asyncio.sleep(0.2)
    subs = [psutil.Process(p.pid) for p in procs]
    pg = [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("postgres")]

    def cpu_of(ps: list[psutil.Process]) -> float:
        total = 0.0
        for p in ps:
            try:
                total += sum(p.cpu_times()[:2])
            except psutil.Error:
                pass
        return total

    me = psutil.Process()
    cpu0, sub0, pg0, t0 = sum(proc.cpu_times()[:2]), cpu_of(subs), cpu_of(pg), time.monotonic()
    me0, (busy0, total0) = sum(me.cpu_times()[:2]), _machine_busy()
    ours, theirs = ctx.Pipe()
    emitter = ctx.Process(
        target=_emitter_main, args=(api.url, run_id, token, seconds, per_batch, theirs)
    )
    emitter.start()
    batches = await _wait(ours)
    emitter.join(30)
    await asyncio.sleep(0.5)
    elapsed = time.monotonic() - t0
    cpu = (sum(proc.cpu_times()[:2]) - cpu0) / elapsed
    sub_cpu = (cpu_of(subs) - sub0) / elapsed
    pg_cpu = (cpu_of(pg) - pg0) / elapsed
    busy1, total1 = _machine_busy()
    own = (cpu + sub_cpu + pg_cpu) * elapsed + sum(me.cpu_times()[:2]) - me0
    other = max(0.0, (busy1 - busy0) - own) / max(1e-9, total1 - total0)
    lat: list[float] = []
    frames = complete = 0
    for pipe in pipes:
        pipe.send(batches * per_batch)  # stop once this seq arrived everywhere
    for pipe in pipes:
        raw, f, done = await _wait(pipe)
        complete += done
        a = array("d")
        a.frombytes(raw)
        lat += list(a)
        frames += f
    for p in procs:
        p.join(30)
    return {
        "n": n,
        "p50": _pct(lat, 50),
        "p99": _pct(lat, 99),
        "frames": frames,
        "expected": batches * n,
        "complete": complete,
        "cpu": cpu,
        "subscriber_cpu": sub_cpu,
        "postgres_cpu": pg_cpu,
        "other": other,
        "rss_per_sub": (rss_idle - rss0) / n,
    }


async def _ingest_rate(api: _Api, runs: list[tuple[int, str, str]], seconds: float) -> float:
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    p = ctx.Process(
        target=_ingest_main, args=(api.url, [(r, t) for r, _, t in runs], seconds, theirs)
    )
    p.start()
    sent, elapsed = await _wait(ours)
    p.join(30)
    return sent / elapsed


_DAGSTER_HARNESS = r'''"""Dagster on SQLite: one graphql-ws subscriber, emit-to-receive latency."""
import asyncio, json, os, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
RATE = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
PORT = int(sys.argv[3]) if len(sys.argv) > 3 else 3999
home = Path(tempfile.mkdtemp(prefix="kiln-bench-dagster-"))
(home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
defs = home / "defs.py"
defs.write_text(f"""
import time
from dagster import job, op

@op
def emit(context):
    time.sleep(3.0)  # let the subscriber attach
    end = time.time() + {SECONDS}
    n = 0
    while time.time() < end:
        context.log.info(f"t={{time.time_ns()}} " + "x" * 300)
        n += 1
        time.sleep(max(0.0, (1.0 / {RATE}) - 0.0005))

@job
def emitter():
    emit()
""")
env = {**os.environ, "DAGSTER_HOME": str(home)}
bindir = Path(sys.executable).parent
web = subprocess.Popen(
    [str(bindir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(PORT), "-f", str(defs)],
    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)

def gql(query, variables=None):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{PORT}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    return json.loads(urllib.request.urlopen(req, timeout=10).read())

try:
    for _ in range(120):
        try:
            gql("{ version }")
            break
        except Exception:
            time.sleep(0.5)
    runner = subprocess.Popen(
        [str(bindir / "dagster"), "job", "execute", "-f", str(defs), "-j", "emitter"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    run_id = None
    for _ in range(200):
        r = gql("{ runsOrError(limit: 1) { ... on Runs { results { runId } } } }")
        res = r["data"]["runsOrError"]["results"]
        if res:
            run_id = res[0]["runId"]
            break
        time.sleep(0.05)
    assert run_id, "no run"

    async def subscribe():
        import websockets
        lat = []
        q = (
            "subscription($runId: ID!) { pipelineRunLogs(runId: $runId) { __typename "
            "... on PipelineRunLogsSubscriptionSuccess { messages { __typename "
            "... on MessageEvent { message } } } } }"
        )
        url = f"ws://127.0.0.1:{PORT}/graphql"
        async with websockets.connect(url, subprotocols=["graphql-ws"], max_size=None) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            payload = {"query": q, "variables": {"runId": run_id}}
            await ws.send(json.dumps({"id": "1", "type": "start", "payload": payload}))
            start = time.time()
            frames = 0
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=SECONDS + 20)
                except asyncio.TimeoutError:
                    break
                now = time.time_ns()
                doc = json.loads(raw)
                if doc.get("type") != "data":
                    if doc.get("type") == "complete":
                        break
                    continue
                frames += 1
                data = doc["payload"]["data"] or {}
                msgs = data.get("pipelineRunLogs", {}).get("messages") or []
                for m in msgs:
                    text = m.get("message") or ""
                    if text.startswith("t="):
                        t = int(text[2:].split(" ", 1)[0])
                        if (now - t) / 1e6 < 2000:  # skip the replay of lines before subscribing
                            lat.append((now - t) / 1e6)
                if runner.poll() is not None and time.time() - start > 3:
                    break
        return lat, frames
    lat, frames = asyncio.run(subscribe())
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))] if lat else float("nan")
    print(json.dumps({"p50": pct(50), "p99": pct(99), "lines": len(lat), "frames": frames}))
finally:
    web.terminate()
    try:
        runner.terminate()
    except Exception:
        pass
    web.wait(10)
'''


async def _dagster_sqlite(seconds: float) -> tuple[float, float] | None:
    """Dagster's webserver on SQLite, one graphql-ws subscriber of a run logging 10 lines/s:
    (p50, p99) emit-to-receive in ms, measured now (full mode)."""
    started = await start_harness(_DAGSTER_HARNESS, str(seconds), "10", str(free_port()))
    if started is None:
        return None
    proc, script = started
    out, _ = await proc.communicate()
    script.unlink(missing_ok=True)
    try:
        doc = json.loads(out.decode().strip().splitlines()[-1])
        return float(doc["p50"]), float(doc["p99"])
    except (ValueError, IndexError, KeyError):
        return None


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median p99 (its other figures come with it)."""
    return sorted(rounds, key=lambda r: r["p99"])[len(rounds) // 2]


def _raise_priority() -> int:
    """On a shared machine, let other work disturb the bench less (root only; PostgreSQL
    keeps its own priority). Children (API, subscribers, Dagster) inherit it. Returns the
    priority to restore."""
    old = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, old - 10)
    except OSError:
        pass
    return old


async def run(quick: bool) -> list[dict[str, Any]]:

    from bench.common import SMOKE

    seconds = 2.0 if SMOKE else 6.0 if quick else 20.0
    rounds = 1 if quick else 3
    priority = _raise_priority()
    try:
        return await _run(quick, seconds, rounds)
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, priority)


async def _run(quick: bool, seconds: float, rounds: int) -> list[dict[str, Any]]:
    from bench.common import row, scratch_database

    by_n: dict[int, list[dict[str, Any]]] = {1: [], 100: [], 1000: []}
    rates: list[float] = []
    async with scratch_database() as db:
        api = _Api(db)
        user_token, runs = await _seed(api, 3 * rounds + 4)
        api.start()
        try:
            for k in range(rounds):
                for i, n in enumerate((1, 100, 1000)):
                    # one subscriber: one line per frame at 10 lines/s, like the Dagster
                    # anchor; many: 3.4 KB batches of 10 lines, 10 a second (the prototype's)
                    per_batch = 1 if n == 1 else LINES_PER_BATCH
                    by_n[n].append(
                        await _phase(api, user_token, runs[3 * k + i], n, seconds, per_batch)
                    )
            for _ in range(rounds):
                rates.append(
                    await _ingest_rate(api, runs[-4:], min(seconds, 5.0) if quick else 15.0)
                )
        finally:
            api.stop()
    results = {n: _median_round(rs) for n, rs in by_n.items()}
    # memory: the first round only (later rounds reuse what the allocator kept)
    rss_per_sub = by_n[1000][0]["rss_per_sub"]
    rate = sorted(rates)[len(rates) // 2]
    measured = None
    if not quick:
        dagster = [m for m in [await _dagster_sqlite(seconds) for _ in range(rounds)] if m]
        measured = sorted(dagster, key=lambda m: m[1])[len(dagster) // 2] if dagster else None
    d50, d99 = measured or DAGSTER_SQLITE
    dname = "Dagster 1.13 on SQLite, 1 subscriber" + ("" if measured else " (recorded)")
    r1, r100, r1k = results[1], results[100], results[1000]
    sname = "strawberry per-subscriber execution (prototype)"
    rows = [
        row(
            GROUP,
            "latency p50, 1 subscriber",
            "ms",
            r1["p50"],
            anchor=d50,
            anchor_name=dname,
            goal="<= 10 ms",
            met=r1["p50"] <= 10,
        ),
        row(
            GROUP,
            "latency p99, 1 subscriber",
            "ms",
            r1["p99"],
            anchor=d99,
            anchor_name=dname,
            goal="<= 30 ms",
            met=r1["p99"] <= 30,
        ),
        row(
            GROUP,
            "latency p50, 1 subscriber vs PG polling",
            "ms",
            r1["p50"],
            anchor=DAGSTER_PG_POLL_MS,
            anchor_name="Dagster on PostgreSQL: poll interval (min)",
            goal="below the poll interval",
            met=r1["p50"] < DAGSTER_PG_POLL_MS,
        ),
        row(GROUP, "latency p50, 100 subscribers", "ms", r100["p50"]),
        row(
            GROUP,
            "latency p99, 100 subscribers",
            "ms",
            r100["p99"],
            anchor=STRAWBERRY_DEFAULT[100][1],
            anchor_name=sname,
        ),
        row(
            GROUP,
            "latency p50, 1,000 subscribers",
            "ms",
            r1k["p50"],
            anchor=STRAWBERRY_DEFAULT[1000][0],
            anchor_name=sname,
        ),
        row(
            GROUP,
            "latency p99, 1,000 subscribers",
            "ms",
            r1k["p99"],
            anchor=STRAWBERRY_DEFAULT[1000][1],
            anchor_name=sname,
            goal="< 100 ms",
            met=r1k["p99"] < 100,
        ),
        row(
            GROUP,
            "subscribers with every line, 1,000 subscribers",
            "%",
            r1k["complete"] / 10,
            goal="100 %",
            higher_is_better=True,
            met=r1k["complete"] == 1000,
        ),
        row(GROUP, "API CPU, 1,000 subscribers, 10 batches/s", "% of a core", 100 * r1k["cpu"]),
        row(
            GROUP,
            "subscriber processes' CPU (load generator)",
            "% of a core",
            100 * r1k["subscriber_cpu"],
        ),
        row(GROUP, "memory per idle subscriber", "KB", rss_per_sub / 1024),
        row(
            GROUP,
            "max sustained ingest, one API process",
            "lines/s",
            rate,
            goal=">= 20,000",
            higher_is_better=True,
            met=rate >= 20_000,
        ),
        row(
            GROUP,
            "other processes' share of the machine (noise)",
            "%",
            100 * max(r["other"] for rs in by_n.values() for r in rs),
        ),
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.logs")
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("serve", help="(internal) the API process")
    s.add_argument("--db", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--data-dir", required=True)
    s.add_argument("--key", required=True)
    alone = sub.add_parser("run", help="run this benchmark alone")
    alone.add_argument("--full", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "serve":
        import uvloop

        os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        uvloop.run(_serve(args.db, args.port, args.data_dir, args.key))
        return 0
    from bench.__main__ import table

    rows = asyncio.run(run(not getattr(args, "full", False)))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
