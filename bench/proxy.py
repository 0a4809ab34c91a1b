"""IDE proxy benchmark: Kiln's raw-byte relay against direct and configurable-http-proxy.

One run on this machine measures, side by side:

* 64-byte websocket echo round trip p50/p99 over one connection;
* throughput (messages/s) with 50 connections, each one message in flight;
* websocket connection setup p50 (TCP connect to 101 response);
* proxy CPU per relayed round trip during the throughput run;
* proxy RSS growth per idle proxied connection, with 1,000 connections;

for (a) a direct connection to an aiohttp echo server (the develop server's
stand-in, on the default asyncio loop like ``kiln develop``), (b) Kiln's front and relay
(``server.gateway.ide_proxy.serve``, in its own process, on uvloop) and (c)
configurable-http-proxy 5.x (JupyterHub's proxy; installed with npm into
``~/.cache/kiln-bench/chp`` when missing). The echo server, the proxies and the
load generator are separate processes, so the client never steals a server's
loop. Two clients measure round trips: the websockets library's client on the
default loop (a typical client; the goal rows use it, as the prototypes did),
and a lean client, a bare asyncio protocol on uvloop (pre-built frames, byte
counting), whose own cost is so small that the ratio to direct shows nearly
only the extra hop; socat (a relay written in C, when installed) shows the
floor of that hop on this machine. Throughput, CPU and setup use the lean
client. Rounds are interleaved (direct, Kiln, chp, direct, ...) and medians
reported. On a machine shared with other work the figures swing widely: the
table's header says how much CPU other processes took during the run.

``python bench/proxy.py [--quick]`` prints the table; ``run(quick)`` returns
the rows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import free_port

SELF = Path(__file__).resolve()
ROOT = SELF.parents[1]
GROUP = "IDE proxy"
CHP_DIR = Path(os.environ.get("KILN_BENCH_CACHE", Path.home() / ".cache" / "kiln-bench")) / "chp"
PAYLOAD = bytes(range(64))
# A client frame: FIN + binary, masked, 64 bytes, with an all-zero mask key
# (valid, and the payload needs no masking work). The echo comes back as
# 2 + 64 bytes, so the client counts bytes instead of parsing frames.
CLIENT_FRAME = b"\x82\xc0\x00\x00\x00\x00" + PAYLOAD
ECHO_SIZE = 2 + len(PAYLOAD)
SECRET = "bench-secret"


# ------------------------------------------------------------------ child roles


def _use_uvloop() -> Callable[[Any], Any]:
    try:
        import uvloop

        return uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run


async def _wait_stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def _echo_main() -> None:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
    await site.start()
    print("READY", runner.addresses[0][1], flush=True)
    await _wait_stdin_closed()
    await runner.cleanup()


async def _front_main(echo_port: int) -> None:
    sys.path.insert(0, str(ROOT))
    from aiohttp import web

    from server.gateway.ide_proxy import IdeRejection, IdeTarget, RequestHead, serve

    relayed = [0]

    def on_activity(n: int) -> None:
        relayed[0] += n

    async def resolver(session_id: str, head: RequestHead) -> IdeTarget | IdeRejection:
        if head.headers.get("Authorization") != "Bearer bench":
            return IdeRejection(401, "authentication required")
        return IdeTarget("127.0.0.1", echo_port, SECRET, session_id, on_activity=on_activity)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    server = await serve(runner, "127.0.0.1", 0, resolver)
    print("READY", server.sockets[0].getsockname()[1], flush=True)
    await _wait_stdin_closed()
    server.close()
    await runner.cleanup()


class _Ws(asyncio.Protocol):
    """A lean websocket client: handshake, then pre-built frames and byte counts."""

    __slots__ = ("_buf", "_pending", "on_echo", "ready", "transport")

    def __init__(self, request: bytes, ready: asyncio.Future[None]) -> None:
        self._buf: bytearray | None = bytearray(request)  # the request, then the response
        self.ready = ready
        self._pending = 0
        self.transport: asyncio.Transport | None = None
        self.on_echo: Callable[[], None] = lambda: None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self._buf is not None
        self.transport.write(bytes(self._buf))
        self._buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        if buf is not None:
            buf += data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self._buf = None
            if not buf.startswith(b"HTTP/1.1 101"):
                line = bytes(buf[: buf.find(b"\r\n")]).decode("latin-1")
                self.ready.set_exception(RuntimeError(f"upgrade refused: {line}"))
                return
            self.ready.set_result(None)
            n = len(buf) - end - 4
        else:
            n = len(data)
        self._pending += n
        while self._pending >= ECHO_SIZE:
            self._pending -= ECHO_SIZE
            self.on_echo()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed during the handshake"))

    def send(self) -> None:
        assert self.transport is not None
        self.transport.write(CLIENT_FRAME)


async def _connect(port: int, path: str) -> _Ws:
    loop = asyncio.get_running_loop()
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Authorization: Bearer bench\r\n\r\n"
    ).encode()
    ready: asyncio.Future[None] = loop.create_future()
    _, proto = await loop.create_connection(lambda: _Ws(request, ready), "127.0.0.1", port)
    await asyncio.wait_for(ready, 30)
    return proto


async def _latency(port: int, path: str, n: int, warmup: int) -> dict[str, float]:
    conn = await _connect(port, path)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    samples: list[int] = []
    state = {"left": n + warmup, "sent": 0}
    clock = time.perf_counter_ns

    def on_echo() -> None:
        samples.append(clock() - state["sent"])
        state["left"] -= 1
        if state["left"] <= 0:
            done.set_result(None)
            return
        state["sent"] = clock()
        conn.send()

    conn.on_echo = on_echo
    state["sent"] = clock()
    conn.send()
    await asyncio.wait_for(done, 120)
    assert conn.transport is not None
    conn.transport.close()
    data = sorted(samples[warmup:])
    return {
        "p50": data[len(data) // 2] / 1000,
        "p99": data[int(len(data) * 0.99)] / 1000,
    }


async def _ws_latency(port: int, path: str, n: int, warmup: int) -> dict[str, float]:
    """Round trips with the websockets library's client (a typical Python client)."""
    from websockets.asyncio.client import connect

    samples = []
    clock = time.perf_counter_ns
    async with connect(
        f"ws://127.0.0.1:{port}{path}",
        additional_headers={"Authorization": "Bearer bench"},
        compression=None,
        ping_interval=None,
    ) as ws:
        for i in range(n + warmup):
            start = clock()
            await ws.send(PAYLOAD)
            await ws.recv()
            if i >= warmup:
                samples.append(clock() - start)
    samples.sort()
    return {
        "p50": samples[len(samples) // 2] / 1000,
        "p99": samples[int(len(samples) * 0.99)] / 1000,
    }


async def _throughput(
    port: int, path: str, conns: int, seconds: float, pid: int | None
) -> dict[str, float]:
    clients = await asyncio.gather(*(_connect(port, path) for _ in range(conns)))
    counter = [0]

    def make(conn: _Ws) -> Callable[[], None]:
        def on_echo() -> None:
            counter[0] += 1
            conn.send()

        return on_echo

    for conn in clients:
        conn.on_echo = make(conn)
        conn.send()
    await asyncio.sleep(min(0.5, seconds / 4))  # warm up
    cpu0 = _cpu_s(pid) if pid else 0.0
    start_count, start = counter[0], time.perf_counter()
    await asyncio.sleep(seconds)
    count, elapsed = counter[0] - start_count, time.perf_counter() - start
    cpu = (_cpu_s(pid) - cpu0) if pid else 0.0
    for conn in clients:
        conn.on_echo = lambda: None
        assert conn.transport is not None
        conn.transport.close()
    return {"msgs_per_s": count / elapsed, "cpu_us_per_msg": cpu / max(count, 1) * 1e6}


async def _setup(port: int, path: str, n: int) -> dict[str, float]:
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        conn = await _connect(port, path)
        times.append(time.perf_counter_ns() - start)
        assert conn.transport is not None
        conn.transport.close()
    times.sort()
    return {"p50": times[len(times) // 2] / 1000}


async def _load_main() -> None:
    """Serve JSON commands from stdin, one per line, answering on stdout."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    held: list[_Ws] = []
    while line := await reader.readline():
        cmd = json.loads(line)
        op = cmd["op"]
        result: dict[str, Any]
        if op == "latency":
            result = await _latency(cmd["port"], cmd["path"], cmd["n"], cmd["warmup"])
        elif op == "throughput":
            result = await _throughput(
                cmd["port"], cmd["path"], cmd["conns"], cmd["seconds"], cmd.get("pid")
            )
        elif op == "ws_latency":
            result = await _ws_latency(cmd["port"], cmd["path"], cmd["n"], cmd["warmup"])
        elif op == "setup":
            result = await _setup(cmd["port"], cmd["path"], cmd["n"])
        elif op == "open":
            for i in range(0, cmd["n"], 100):
                batch = min(100, cmd["n"] - i)
                held += await asyncio.gather(
                    *(_connect(cmd["port"], cmd["path"]) for _ in range(batch))
                )
            result = {"open": len(held)}
        elif op == "close":
            for conn in held:
                if conn.transport is not None:
                    conn.transport.close()
            held.clear()
            await asyncio.sleep(0.2)
            result = {"open": 0}
        else:
            result = {"error": f"unknown op {op}"}
        print(json.dumps(result), flush=True)


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _child(role: str, args: list[str]) -> None:
    _raise_fd_limit()
    run = _use_uvloop()
    if role == "_echo":
        # The stand-in runs like the develop server it replaces (`kiln develop`
        # serves aiohttp on the default asyncio loop); `_echo uvloop` for uvloop.
        (run if args[:1] == ["uvloop"] else asyncio.run)(_echo_main())
    elif role == "_front":
        run(_front_main(int(args[0])))
    elif role == "_load":
        run(_load_main())
    elif role == "_load_asyncio":  # the default loop, as most Python clients run
        asyncio.run(_load_main())
    else:
        raise SystemExit(f"unknown role {role}")


# ----------------------------------------------------------------- orchestration


class _Proc:
    def __init__(self, proc: asyncio.subprocess.Process, name: str, graceful: bool = True) -> None:
        self.proc = proc
        self.name = name
        self.graceful = graceful  # stops when its stdin closes

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 3 if self.graceful else 0.01)
            except TimeoutError:
                self.proc.terminate()
                try:
                    await asyncio.wait_for(self.proc.wait(), 3)
                except TimeoutError:
                    self.proc.kill()
                    await self.proc.wait()


async def _spawn_python(role: str, *args: str) -> tuple[_Proc, int | None]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SELF),
        role,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
    )
    wrapped = _Proc(proc, role)
    if role.startswith("_load"):
        return wrapped, None
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if not line.startswith(b"READY"):
        await wrapped.stop()
        raise RuntimeError(f"{role} did not start: {line!r}")
    return wrapped, int(line.split()[1])


def _chp_command() -> list[str] | None:
    local = CHP_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
    if not local.exists() and shutil.which("npm") is not None:
        CHP_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(CHP_DIR),
                "configurable-http-proxy@5",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ],
            check=False,
            capture_output=True,
            timeout=300,
        )
    if local.exists():
        return [str(local)]
    found = shutil.which("configurable-http-proxy")
    return [found] if found else None



async def _wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def _version(command: list[str]) -> str:
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


async def _spawn_chp(echo_port: int) -> tuple[_Proc, int, str] | None:
    command = await asyncio.to_thread(_chp_command)
    if command is None:
        return None
    version = await asyncio.to_thread(_version, command)
    port, api_port = free_port(), free_port()
    env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": "bench-token"}
    proc = await asyncio.create_subprocess_exec(
        *command,
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--api-ip",
        "127.0.0.1",
        "--api-port",
        str(api_port),
        "--default-target",
        f"http://127.0.0.1:{echo_port}",
        "--log-level",
        "error",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    wrapped = _Proc(proc, "chp", graceful=False)
    try:
        await _wait_port(port)
    except OSError:
        await wrapped.stop()
        return None
    return wrapped, port, version


async def _spawn_socat(echo_port: int) -> tuple[_Proc, int] | None:
    """socat, a relay in C, as the floor of what one more process hop costs."""
    if shutil.which("socat") is None:
        return None
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        "socat",
        f"TCP4-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,nodelay",
        f"TCP4:127.0.0.1:{echo_port},nodelay",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    wrapped = _Proc(proc, "socat", graceful=False)
    try:
        await _wait_port(port)
    except OSError:
        await wrapped.stop()
        return None
    return wrapped, port


class _Load:
    def __init__(self, proc: _Proc) -> None:
        self.proc = proc.proc

    async def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 300)
        if not line:
            raise RuntimeError("load generator died")
        result: dict[str, Any] = json.loads(line)
        return result


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _row(
    metric: str,
    unit: str,
    kiln: float,
    anchor: float | None,
    anchor_name: str | None,
    goal: str,
    met: bool | None,
) -> dict[str, Any]:
    ratio = round(kiln / anchor, 3) if anchor else None
    return {
        "group": GROUP,
        "metric": metric,
        "unit": unit,
        "kiln": round(kiln, 2),
        "anchor": round(anchor, 2) if anchor is not None else None,
        "anchor_name": anchor_name,
        "ratio": ratio,
        "goal": goal,
        "met": met,
    }


async def run(quick: bool) -> list[dict[str, Any]]:
    """Measure and return the table rows (see the module docstring)."""
    rounds = 3
    from bench.common import SMOKE

    n_rtt = 200 if SMOKE else 2000 if quick else 20000
    n_ws_rtt = 200 if SMOKE else 1500 if quick else 10000
    tput_seconds = 0.5 if SMOKE else 1.0 if quick else 5.0
    n_setup = 20 if SMOKE else 100 if quick else 300
    n_idle = 1000

    procs: list[_Proc] = []
    try:
        echo, echo_port = await _spawn_python("_echo")
        procs.append(echo)
        assert echo_port is not None
        front, front_port = await _spawn_python("_front", str(echo_port))
        procs.append(front)
        assert front_port is not None
        chp = await _spawn_chp(echo_port)
        chp_name = "configurable-http-proxy"
        if chp is not None:
            procs.append(chp[0])
            chp_name = f"configurable-http-proxy {chp[2]}"
        socat = await _spawn_socat(echo_port)
        if socat is not None:
            procs.append(socat[0])
        lean_proc, _ = await _spawn_python("_load")
        procs.append(lean_proc)
        lean = _Load(lean_proc)
        ws_proc, _ = await _spawn_python("_load_asyncio")
        procs.append(ws_proc)
        wsl = _Load(ws_proc)

        # name -> (port, path, pid of the proxy or None)
        targets: dict[str, tuple[int, str, int | None]] = {
            "direct": (echo_port, "/ws", None),
            "kiln": (front_port, "/ide/bench/ws", front.pid),
        }
        if chp is not None:
            targets["chp"] = (chp[1], "/ide/bench/ws", chp[0].pid)
        floor = {"socat": (socat[1], "/ws", None)} if socat is not None else {}

        samples: dict[str, dict[str, list[float]]] = {}

        def add(metric: str, name: str, value: float) -> None:
            samples.setdefault(metric, {}).setdefault(name, []).append(value)

        for port, path, _ in [*targets.values(), *floor.values()]:  # warm up once
            await lean.call(op="latency", port=port, path=path, n=500, warmup=200)
            await wsl.call(op="ws_latency", port=port, path=path, n=200, warmup=100)
        for port, path, _ in targets.values():
            await lean.call(op="throughput", port=port, path=path, conns=50, seconds=0.3)

        for _ in range(rounds):  # interleaved rounds; medians below
            for name, (port, path, pid) in targets.items():
                lat = await wsl.call(op="ws_latency", port=port, path=path, n=n_ws_rtt, warmup=200)
                add("ws_p50", name, lat["p50"])
                add("ws_p99", name, lat["p99"])
                lat = await lean.call(op="latency", port=port, path=path, n=n_rtt, warmup=300)
                add("lean_p50", name, lat["p50"])
                add("lean_p99", name, lat["p99"])
                res = await lean.call(
                    op="throughput", port=port, path=path, conns=50, seconds=tput_seconds, pid=pid
                )
                add("tput", name, res["msgs_per_s"])
                add("cpu", name, res["cpu_us_per_msg"])
                res = await lean.call(op="setup", port=port, path=path, n=n_setup)
                add("setup", name, res["p50"])
            for name, (port, path, _) in floor.items():
                lat = await lean.call(op="latency", port=port, path=path, n=n_rtt, warmup=300)
                add("lean_p50", name, lat["p50"])

        idle_kb: dict[str, float] = {}
        for name, (port, path, pid) in targets.items():
            if pid is None:
                continue
            await lean.call(op="open", port=port, path=path, n=10)
            await lean.call(op="close")
            await asyncio.sleep(0.5)
            before = _rss_kb(pid)
            await lean.call(op="open", port=port, path=path, n=n_idle)
            await asyncio.sleep(1.0)
            after = _rss_kb(pid)
            await lean.call(op="close")
            idle_kb[name] = (after - before) / n_idle
    finally:
        for proc in reversed(procs):
            await proc.stop()

    def m(metric: str, name: str) -> float | None:
        values = samples.get(metric, {}).get(name)
        return statistics.median(values) if values else None

    def kiln(metric: str) -> float:
        value = m(metric, "kiln")
        assert value is not None
        return value

    direct = "direct to the echo server"
    ws_client = "websockets client"
    lean_client = "lean client"
    rows = []
    ws_p50, ws_direct, ws_chp = kiln("ws_p50"), m("ws_p50", "direct"), m("ws_p50", "chp")
    rows.append(
        _row(
            f"round trip p50, 64 B echo, 1 conn ({ws_client})",
            "us",
            ws_p50,
            ws_direct,
            direct,
            "<= 1.4x direct",
            ws_p50 <= 1.4 * ws_direct if ws_direct else None,
        )
    )
    rows.append(
        _row(
            f"round trip p50, 64 B echo, 1 conn ({ws_client})",
            "us",
            ws_p50,
            ws_chp,
            chp_name,
            "below configurable-http-proxy",
            ws_p50 < ws_chp if ws_chp else None,
        )
    )
    for anchor, label in ((m("ws_p99", "direct"), direct), (m("ws_p99", "chp"), chp_name)):
        rows.append(
            _row(
                f"round trip p99, 64 B echo, 1 conn ({ws_client})",
                "us",
                kiln("ws_p99"),
                anchor,
                label,
                "report",
                None,
            )
        )
    lean_p50 = kiln("lean_p50")
    lean_direct = m("lean_p50", "direct")
    for anchor, label in (
        (lean_direct, direct),
        (m("lean_p50", "chp"), chp_name),
        (m("lean_p50", "socat"), "socat (a relay in C: the floor of one more hop)"),
    ):
        if anchor is not None:
            rows.append(
                _row(
                    f"round trip p50, 64 B echo, 1 conn ({lean_client})",
                    "us",
                    lean_p50,
                    anchor,
                    label,
                    "report",
                    None,
                )
            )
    if lean_direct is not None:
        for name, label in (("chp", chp_name), ("socat", "socat (floor)")):
            other = m("lean_p50", name)
            if other is not None:
                rows.append(
                    _row(
                        f"round trip p50 added over direct ({lean_client})",
                        "us",
                        lean_p50 - lean_direct,
                        other - lean_direct,
                        label,
                        "report",
                        None,
                    )
                )
    rows.append(
        _row(
            f"round trip p99, 64 B echo, 1 conn ({lean_client})",
            "us",
            kiln("lean_p99"),
            m("lean_p99", "chp"),
            chp_name,
            "report",
            None,
        )
    )
    tput, tput_chp = kiln("tput"), m("tput", "chp")
    rows.append(
        _row(
            f"throughput, 50 conns ({lean_client})",
            "msgs/s",
            tput,
            m("tput", "direct"),
            direct,
            "report",
            None,
        )
    )
    rows.append(
        _row(
            f"throughput, 50 conns ({lean_client})",
            "msgs/s",
            tput,
            tput_chp,
            chp_name,
            ">= configurable-http-proxy",
            tput >= tput_chp if tput_chp else None,
        )
    )
    rows.append(
        _row(
            "proxy CPU per round trip, 50 conns",
            "us",
            kiln("cpu"),
            m("cpu", "chp"),
            chp_name,
            "report",
            None,
        )
    )
    rows.append(
        _row(
            "websocket connection setup p50",
            "us",
            kiln("setup"),
            m("setup", "chp"),
            chp_name,
            "report",
            None,
        )
    )
    rows.append(
        _row(
            f"proxy RSS per idle proxied connection ({n_idle})",
            "KB",
            idle_kb["kiln"],
            idle_kb.get("chp"),
            chp_name,
            "<= 5 KB",
            idle_kb["kiln"] <= 5.0,
        )
    )
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = ["metric", "unit", "kiln", "anchor", "anchor_name", "ratio", "goal", "met"]
    cells = [head] + [
        [
            "" if r[k] is None else "yes" if r[k] is True else "NO" if r[k] is False else str(r[k])
            for k in head
        ]
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(head))) for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / ticks, sum(values) / ticks


def _own_cpu() -> float:
    """CPU seconds of this process and its reaped children (the bench's processes)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def other_work(measure: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``measure()``; also return the share (0-1) of the machine's CPU that
    processes other than the bench's used meanwhile (other test suites ...)."""
    busy0, total0 = _machine_cpu()
    own0 = _own_cpu()
    result = measure()
    busy1, total1 = _machine_cpu()
    foreign = (busy1 - busy0) - (_own_cpu() - own0)
    return result, max(0.0, foreign / max(total1 - total0, 1e-9))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        _child(sys.argv[1], sys.argv[2:])
    else:
        _raise_fd_limit()
        started = time.monotonic()
        result, foreign = other_work(lambda: asyncio.run(run(quick="--quick" in sys.argv)))
        print(
            f"{GROUP} (took {time.monotonic() - started:.0f} s on {os.cpu_count()} cores; "
            f"other processes used {foreign:.0%} of the machine meanwhile)"
        )
        if foreign > 0.05:
            print("note: the machine was not idle; ratios are unreliable, run again when idle")
        print(_table(result))
        if "--json" in sys.argv:
            print(json.dumps(result, indent=2))
