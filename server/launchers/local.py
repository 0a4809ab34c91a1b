"""Run workers as local subprocesses: ``kiln worker run RUN_ID`` in its own process group.

Contract (on top of :mod:`server.launchers.base`):

* The worker runs in a new session (``start_new_session``), so its process
  group id is its pid and dbt, which it starts as a child, shares the group:
  ``terminate`` signals the whole group (SIGTERM, then SIGKILL after
  ``terminate_grace`` seconds) and nothing of the run survives.
* The run token is passed in the environment (``KILN_RUN_TOKEN``), never in
  argv (argv is world-readable in ``ps``). The worker's environment is this
  process's minus every ``KILN_*`` setting that names the database, the
  secret key or object-store credentials, and minus ``DBT_ENV_SECRET_*``
  and ``PG*`` variables: the worker holds only its run token.
* The handle is ``"<pid>:<create_time>@<host>"``. A pid is reused by the kernel
  once its process is gone; the creation time recorded at launch tells a
  reused pid apart, so ``check_health`` and ``terminate`` never report on, or
  kill, a stranger. Any process on the same host can use a handle (another
  scheduler, or this one after a restart): ``check_health`` uses the
  ``Popen`` object (exit code, signal) when this process started the worker
  and psutil otherwise. A handle of another host (two schedulers on two
  machines) is reported UNKNOWN and never signalled: heartbeats judge it.
* ``launch`` is idempotent per run id within a process: a live worker for
  the run is returned, not duplicated.
* When the API serves https with its own certificate (``--tls-cert``), the
  worker gets ``KILN_API_CA_FILE`` pointing at it, so it trusts that
  certificate for API calls without changing trust for git or dbt.
* The worker's own stdout/stderr (not dbt's: that goes to the run's log
  lines) is appended to ``<data-dir>/workers/<run>.log`` for operators.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from server.config import Settings
from server.launchers.base import LaunchSpec, RunLauncher, WorkerHealth, WorkerState

log = logging.getLogger("kiln.launcher.local")

_KEEP_KILN = {
    "KILN_LOG_LEVEL",
    "KILN_LOG_FORMAT",
    "KILN_WORKER_WORKDIR",
    "KILN_WORKER_KEEP",
    "KILN_API_CA_FILE",
}
KEEP_EXITED = 600.0  # seconds an exited worker's exit status stays known
_DROP_PREFIXES = ("DBT_ENV_SECRET_", "PG", "AWS_", "KUBE")


def worker_env(base: Mapping[str, str], spec: LaunchSpec) -> dict[str, str]:
    """The worker's environment: ``base`` without server secrets, plus the run's own."""
    env = {
        k: v
        for k, v in base.items()
        if (not k.startswith("KILN_") or k in _KEEP_KILN) and not k.startswith(_DROP_PREFIXES)
    }
    env.update(spec.env)
    env.update(
        {
            "KILN_API_URL": spec.api_url,
            "KILN_RUN_ID": str(spec.run_id),
            "KILN_RUN_TOKEN": spec.token,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


HOST = socket.gethostname()


def parse_handle(handle: str | None) -> tuple[int, float] | None:
    """``"<pid>:<create_time>@<host>"`` → (pid, create_time); None if malformed."""
    if not handle:
        return None
    ident, _, _host = handle.partition("@")
    pid_s, _, ctime_s = ident.partition(":")
    try:
        return int(pid_s), float(ctime_s or 0)
    except ValueError:
        return None


def handle_host(handle: str | None) -> str | None:
    """The host a handle was made on (None for handles without one)."""
    if not handle or "@" not in handle:
        return None
    return handle.partition("@")[2] or None


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"worker killed by {name} (signal {-returncode})"
    return f"worker exited with exit code {returncode}"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalRunLauncher(RunLauncher):
    """Starts workers as subprocesses of this process; see the module docstring."""

    kind = "local"

    def __init__(
        self,
        settings: Settings,
        *,
        command: list[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        terminate_grace: float = 5.0,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        root = str(Path(__file__).resolve().parents[2])
        self.command = command or [sys.executable, "-m", "server.cli", "worker", "run"]
        self.extra_env = dict(extra_env or {})
        self.terminate_grace = terminate_grace
        base = dict(os.environ if base_env is None else base_env)
        base["PYTHONPATH"] = root + (
            os.pathsep + base["PYTHONPATH"] if base.get("PYTHONPATH") else ""
        )
        self.base_env = base
        self.log_dir = settings.data_dir / "workers"
        self._procs: dict[int, tuple[subprocess.Popen[bytes], str]] = {}
        self._exited: dict[int, float] = {}

    def _spawn(self, spec: LaunchSpec) -> subprocess.Popen[bytes]:
        """fork/exec takes about a millisecond: no thread needed."""
        env = worker_env(self.base_env, spec)
        if self.settings.tls_cert and spec.api_url.startswith("https:"):
            env["KILN_API_CA_FILE"] = str(self.settings.tls_cert)
        env.update(self.extra_env)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_dir / f"{spec.run_id}.log", "ab")
        try:
            proc = subprocess.Popen(
                [*self.command, str(spec.run_id)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                cwd=str(self.settings.data_dir),
            )
        finally:
            out.close()
        return proc

    async def launch(self, spec: LaunchSpec) -> str:
        known = self._procs.get(spec.run_id)
        if known is not None and known[0].poll() is None:
            return known[1]
        self._prune()
        proc = self._spawn(spec)
        try:
            ctime = psutil.Process(proc.pid).create_time()
        except psutil.Error:  # exited already: the handle still names it
            ctime = 0.0
        handle = f"{proc.pid}:{ctime:.3f}@{HOST}"
        self._procs[spec.run_id] = (proc, handle)
        return handle

    def _prune(self) -> None:
        """Forget workers that exited over ``KEEP_EXITED`` seconds ago (reaped by poll)."""
        now = time.monotonic()
        for run_id, (proc, _h) in list(self._procs.items()):
            if proc.poll() is None:
                continue
            seen = self._exited.setdefault(run_id, now)
            if now - seen > KEEP_EXITED:
                del self._procs[run_id]
                del self._exited[run_id]

    def _proc(self, run_id: int, handle: str | None) -> subprocess.Popen[bytes] | None:
        known = self._procs.get(run_id)
        if known is not None and (handle is None or known[1] == handle):
            return known[0]
        return None

    @staticmethod
    def _identity(pid: int, ctime: float) -> str:
        """``ours`` (alive), ``zombie``, ``gone`` (no such pid) or ``reused`` (a stranger)."""
        try:
            p = psutil.Process(pid)
            if ctime and abs(p.create_time() - ctime) > 0.01:
                return "reused"
            if p.status() == psutil.STATUS_ZOMBIE:
                return "zombie"
            return "ours"
        except psutil.NoSuchProcess:
            return "gone"
        except psutil.Error:
            return "ours"

    async def check_health(self, run_id: int, handle: str | None) -> WorkerHealth:
        proc = self._proc(run_id, handle)
        if proc is not None:
            rc = proc.poll()
            if rc is None:
                return WorkerHealth(WorkerState.RUNNING)
            return WorkerHealth(WorkerState.EXITED, exit_code=rc, reason=_describe(rc))
        if handle_host(handle) not in (None, HOST):
            return WorkerHealth(WorkerState.UNKNOWN, reason=f"worker runs on {handle_host(handle)}")
        parsed = parse_handle(handle)
        if parsed is None:
            return WorkerHealth(WorkerState.MISSING, reason="no worker was recorded for the run")
        pid, ctime = parsed
        who = self._identity(pid, ctime)
        if who == "ours":
            return WorkerHealth(WorkerState.RUNNING)
        if who == "zombie":
            return WorkerHealth(WorkerState.EXITED, reason="worker exited (zombie, not our child)")
        return WorkerHealth(
            WorkerState.MISSING, reason=f"worker process {pid} is gone (exit status unknown)"
        )

    async def terminate(self, run_id: int, handle: str | None) -> None:
        if handle_host(handle) not in (None, HOST):
            log.warning("cannot terminate worker %s from %s", handle, HOST)
            return
        proc = self._proc(run_id, handle)
        parsed = parse_handle(handle)
        pid = proc.pid if proc is not None else parsed[0] if parsed else None
        if pid is None:
            return
        if proc is None and parsed is not None:
            who = self._identity(*parsed)
            # The kernel does not hand out a number as a pid while a process group of that
            # id exists. So a reused pid means our group is gone (the group now there is a
            # stranger's), while a vanished leader may have left members behind (dbt after
            # the worker was killed): those are still ours to kill.
            if who == "reused" or (who == "gone" and not _group_alive(pid)):
                return
        if not self._signal_group(pid, signal.SIGTERM):
            self._reap(proc)
            return
        deadline = time.monotonic() + self.terminate_grace
        while time.monotonic() < deadline:
            self._reap(proc)
            if not _group_alive(pid):
                break
            await asyncio.sleep(0.05)
        else:
            self._signal_group(pid, signal.SIGKILL)
            for _ in range(100):
                self._reap(proc)
                if not _group_alive(pid):
                    break
                await asyncio.sleep(0.05)
        self._reap(proc)

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> bool:
        try:
            os.killpg(pgid, sig)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            log.warning("not allowed to signal worker group %s", pgid)
            return False

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.poll()

    async def close(self) -> None:
        for proc, _ in self._procs.values():
            self._reap(proc)
