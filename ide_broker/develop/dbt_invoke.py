"""``dbt.invoke``: dbt CLI commands run as subprocesses, streamed and cancellable.

Why a subprocess: a build can run for an hour, fail hard or need killing;
the develop server and its warm runner must survive all of that.

Invariants:

* Only allow-listed subcommands run, and the client cannot move the project,
  profiles, target or log locations (those flags are refused as invalid
  params). The server adds ``--log-format json --no-use-colors``, the
  profiles and project dirs, and its default ``--target``.
* Invocations are serialized by one asyncio lock (they share ``target/``),
  the same lock the warm runner takes for DuckDB warehouse access; holding
  it, an invocation first makes the warm runner close its DuckDB handle. A
  queued invocation can be cancelled before it starts.
* Each dbt runs in its own session/process group; cancel sends SIGTERM to the
  group, then SIGKILL after a grace period. If the request task is cancelled
  (client gone, server stopping) the group is killed the same way: no dbt
  process outlives its request.
* Every stdout line is parsed as JSON and forwarded as a ``dbt.log``
  notification (non-JSON lines, and stderr, go as plain strings). The
  session secret is not in the subprocess environment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CONFLICT, UNKNOWN_INVOCATION, app_error, invalid_params

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]  # (method, params) notification

ALLOWED = frozenset(
    {"build", "run", "test", "seed", "snapshot", "compile", "ls", "list", "parse", "deps",
     "show", "retry", "clean", "debug"}
)
ALLOWED_PAIRS = {"docs": "generate", "source": "freshness"}
FORBIDDEN_FLAGS = frozenset(
    {"--project-dir", "--profiles-dir", "--target-path", "--log-path", "--log-format",
     "--log-format-file"}
)
# Changing what the warm manifest was parsed from.
STALE_AFTER = frozenset({"deps", "clean"})
CANCEL_GRACE = 5.0
LINE_LIMIT = 16 * 1024 * 1024
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# Same as the `dbt` console script of this interpreter, without depending on where it lives.
DBT_MAIN = "import sys; from dbt.cli.main import cli; sys.argv[0] = 'dbt'; sys.exit(cli())"


@dataclass
class Invocation:
    id: str
    args: list[str]
    proc: asyncio.subprocess.Process | None = None
    cancelled: bool = False
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


def validate_args(args: list[str]) -> list[str]:
    """The allow-list; returns the subcommand words (``["docs", "generate"]``)."""
    if not args:
        raise invalid_params("param 'args' must name a dbt subcommand, e.g. [\"build\"]")
    for i, arg in enumerate(args):
        if "\x00" in arg:
            raise invalid_params(f"param 'args'[{i}] contains a NUL byte")
        flag = arg.split("=", 1)[0]
        if flag in FORBIDDEN_FLAGS:
            raise invalid_params(
                f"param 'args': {flag} is set by the develop server and cannot be overridden"
            )
    cmd = args[0]
    if cmd in ALLOWED:
        return [cmd]
    if cmd in ALLOWED_PAIRS:
        if len(args) > 1 and args[1] == ALLOWED_PAIRS[cmd]:
            return [cmd, args[1]]
        raise invalid_params(
            f"param 'args': only '{cmd} {ALLOWED_PAIRS[cmd]}' is allowed, not {args[:2]!r}"
        )
    allowed = sorted(ALLOWED | {f"{k} {v}" for k, v in ALLOWED_PAIRS.items()})
    raise invalid_params(
        f"param 'args': dbt subcommand {cmd!r} is not allowed (allowed: {', '.join(allowed)})"
    )


class Invocations:
    def __init__(
        self,
        project_dir: Path,
        profiles_dir: Path,
        target: str | None,
        dbt_lock: asyncio.Lock,
        before_start: Callable[[], Awaitable[None]],
        on_finished: Callable[[list[str]], None],
    ) -> None:
        self.project_dir = project_dir
        self.profiles_dir = profiles_dir
        self.target = target
        self.lock = dbt_lock
        self.before_start = before_start
        self.on_finished = on_finished
        self.running: dict[str, Invocation] = {}
        self._counter = 0
        env = dict(os.environ)
        env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        env["PYTHONUNBUFFERED"] = "1"
        self.env = env

    def new_id(self, requested: str | None) -> str:
        if requested is None:
            self._counter += 1
            return f"inv-{self._counter}-{os.urandom(3).hex()}"
        if not _ID_RE.match(requested):
            raise invalid_params("param 'invocation' must be 1-64 of [A-Za-z0-9_.:-]")
        if requested in self.running:
            raise app_error(CONFLICT, "conflict", f"Invocation {requested!r} is already running")
        return requested

    def argv(self, args: list[str]) -> list[str]:
        argv = [sys.executable, "-c", DBT_MAIN, *args, "--log-format", "json", "--no-use-colors",
                "--profiles-dir", str(self.profiles_dir), "--project-dir", str(self.project_dir)]
        has_target = any(a in ("--target", "-t") or a.startswith("--target=") for a in args)
        if self.target and not has_target:
            argv += ["--target", self.target]
        if args[0] == "show":  # `show` output holds rows: keep it out of logs/dbt.log
            argv += ["--log-level-file", "none"]
        return argv

    async def run(self, inv_id: str, args: list[str], emit: Emit) -> dict[str, Any]:
        command = validate_args(args)
        inv = Invocation(inv_id, list(args))
        self.running[inv_id] = inv
        started = time.monotonic()
        rc: int | None = None
        try:
            await emit("dbt.started", {"invocation": inv_id, "args": args})
            if not await self._acquire(inv):  # cancelled while queued
                return self._result(inv, None, started)
            try:
                rc = await self._run_process(inv, emit)
            finally:
                # dbt is gone before the next one may start (DuckDB: one writer).
                if inv.proc is not None and inv.proc.returncode is None:
                    await asyncio.shield(_terminate(inv.proc))
                self.lock.release()
        finally:
            self.running.pop(inv_id, None)
            inv.done.set()
            if " ".join(command) in STALE_AFTER:
                self.on_finished(command)
        return self._result(inv, rc, started)

    async def _acquire(self, inv: Invocation) -> bool:
        """Take the dbt lock, unless the invocation is cancelled while it waits."""
        acquire = asyncio.create_task(self.lock.acquire())
        cancel = asyncio.create_task(inv.cancel_requested.wait())
        interrupted = True
        try:
            await asyncio.wait({acquire, cancel}, return_when=asyncio.FIRST_COMPLETED)
            interrupted = False
        finally:
            cancel.cancel()
            if not acquire.done():
                acquire.cancel()  # asyncio.Lock gives nothing to a cancelled waiter
                with suppress(asyncio.CancelledError):
                    await acquire
            got = acquire.done() and not acquire.cancelled() and acquire.exception() is None
            if got and (inv.cancelled or interrupted):
                self.lock.release()
                got = False
        return got

    def _result(self, inv: Invocation, rc: int | None, started: float) -> dict[str, Any]:
        return {
            "invocation": inv.id,
            "success": rc == 0 and not inv.cancelled,
            "exitCode": rc,
            "cancelled": inv.cancelled,
            "elapsed": round(time.monotonic() - started, 3),
        }

    async def _run_process(self, inv: Invocation, emit: Emit) -> int | None:
        await self.before_start()
        if inv.cancelled:
            return None
        inv.proc = await asyncio.create_subprocess_exec(
            *self.argv(inv.args),
            cwd=self.project_dir,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=LINE_LIMIT,
        )
        log.info("dbt %s started (invocation %s, pid %d)", inv.args[0], inv.id, inv.proc.pid)
        if inv.cancelled:  # cancelled while it was being spawned
            await _terminate(inv.proc)
        assert inv.proc.stdout is not None and inv.proc.stderr is not None
        await asyncio.gather(
            self._pump(inv, inv.proc.stdout, emit, stderr=False),
            self._pump(inv, inv.proc.stderr, emit, stderr=True),
        )
        rc = await inv.proc.wait()
        log.info("dbt %s finished (invocation %s, exit %s)", inv.args[0], inv.id, rc)
        return rc

    async def _pump(
        self, inv: Invocation, stream: asyncio.StreamReader, emit: Emit, stderr: bool
    ) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over LINE_LIMIT: drop what is buffered
                raw = b"<line too long, dropped>\n"
            if not raw:
                return
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not text:
                continue
            line: Any = text
            if not stderr:
                with suppress(ValueError):
                    parsed = json.loads(text)
                    if isinstance(parsed, dict):
                        line = parsed
            params: dict[str, Any] = {"invocation": inv.id, "line": line}
            if stderr:
                params["stream"] = "stderr"
            await emit("dbt.log", params)

    async def cancel(self, inv_id: str) -> dict[str, Any]:
        inv = self.running.get(inv_id)
        if inv is None:
            raise app_error(
                UNKNOWN_INVOCATION, "unknown_invocation",
                f"No running invocation {inv_id!r}", invocation=inv_id,
            )
        inv.cancelled = True
        inv.cancel_requested.set()
        if inv.proc is not None and inv.proc.returncode is None:
            await _terminate(inv.proc)
        with suppress(TimeoutError):
            await asyncio.wait_for(inv.done.wait(), CANCEL_GRACE)
        return {"invocation": inv_id, "cancelled": True}

    async def shutdown(self) -> None:
        """Cancel everything (server stopping)."""
        for inv in list(self.running.values()):
            inv.cancelled = True
            inv.cancel_requested.set()
        procs = [i.proc for i in self.running.values() if i.proc and i.proc.returncode is None]
        await asyncio.gather(*(_terminate(p) for p in procs), return_exceptions=True)


async def _terminate(proc: asyncio.subprocess.Process, grace: float = CANCEL_GRACE) -> None:
    """SIGTERM the process group, SIGKILL it if it is still there after ``grace``."""
    if proc.returncode is not None:
        return
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
