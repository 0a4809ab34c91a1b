"""LocalSpawner: the develop server as a ``kiln develop`` subprocess on loopback.

* Workspace: ``<data-dir>/workspaces/<account>/<user>/<project>``.
* Private files of the session (profiles.yml, log): ``<data-dir>/ide/<session>/``,
  mode 0700; the session secret reaches the process in its environment only.
* The process runs in its own session (process group), listens on a free
  loopback port and announces it with ``KILN_DEVELOP_READY port=N`` on stdout.
* It is deliberately not a child that dies with Kiln: a restarted ``kiln up``
  re-attaches through ``load_state`` (pid + start time, so a recycled pid is
  never mistaken for it) or stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from ide_broker.spawners.base import Endpoint, Spawner, SpawnSpec, workspace_path
from ide_broker.workspace import ensure_workspace
from server.profiles import project_profile_name, render_profiles, write_private

READY = "KILN_DEVELOP_READY port="
START_TIMEOUT = 60.0


class SpawnError(Exception):
    pass


class LocalSpawner(Spawner):
    def __init__(self, spec: SpawnSpec, *, data_dir: Path, python: str = sys.executable) -> None:
        super().__init__(spec)
        self.data_dir = data_dir
        self.python = python
        self.pid: int | None = None
        self.create_time: float | None = None
        self.port: int | None = None
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def session_dir(self) -> Path:
        return self.data_dir / "ide" / str(self.spec.session_id)

    async def start(self) -> Endpoint:
        spec = self.spec
        workspace = workspace_path(self.data_dir, spec.workspace_key)
        project_dir = await ensure_workspace(workspace, spec)
        profiles = spec.profiles_yml
        if spec.profile_output:
            profiles = render_profiles(
                profile=project_profile_name(project_dir),
                target=spec.profile_target,
                adapter=spec.profile_output["type"],
                details={k: v for k, v in spec.profile_output.items() if k != "type"},
                fields={},
                secrets={},
                threads=int(spec.profile_output.get("threads", 4)),
            )
        profiles_dir = write_private(self.session_dir / "profiles", profiles)
        self.session_dir.chmod(0o700)
        log = (self.session_dir / "develop.log").open("ab")
        env = {
            **os.environ,
            **spec.env,
            "KILN_DEVELOP_SECRET": spec.secret,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PYTHONUNBUFFERED": "1",
        }
        args = [
            self.python,
            "-m",
            "server.cli",
            "develop",
            "--workspace",
            str(workspace),
            "--project-subdir",
            spec.project_subdirectory,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--profiles-dir",
            str(profiles_dir.parent),
            "--target",
            spec.profile_target,
        ]
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *args,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(Path(__file__).resolve().parents[2]),
            )
        finally:
            log.close()
        self.pid = self._proc.pid
        with contextlib.suppress(psutil.Error):
            self.create_time = psutil.Process(self.pid).create_time()
        assert self._proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = await asyncio.wait_for(self._proc.stdout.readline(), max(remaining, 0.01))
            except TimeoutError:
                await self.stop(now=True)
                raise SpawnError("the develop server did not start within 60 s") from None
            if not line:
                code = await self._proc.wait()
                raise SpawnError(f"the develop server exited with code {code}: {self._log_tail()}")
            text = line.decode(errors="replace").strip()
            if text.startswith(READY):
                self.port = int(text[len(READY) :])
                return Endpoint("127.0.0.1", self.port)

    def _log_tail(self) -> str:
        try:
            return (self.session_dir / "develop.log").read_text(errors="replace")[-500:].strip()
        except OSError:
            return ""

    def _process(self) -> psutil.Process | None:
        if self.pid is None:
            return None
        try:
            proc = psutil.Process(self.pid)
            if self.create_time is not None and abs(proc.create_time() - self.create_time) > 1:
                return None  # the pid was recycled
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    async def poll(self) -> int | None:
        if self._proc is not None and self._proc.returncode is not None:
            return self._proc.returncode
        return None if self._process() is not None else 0

    async def stop(self, now: bool = False) -> None:
        proc = self._process()
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + (0.5 if now else 5.0)
        while time.monotonic() < deadline and self._process() is not None:
            if self._proc is not None and self._proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._proc.wait(), 0.1)
            else:
                await asyncio.sleep(0.1)
        if self._process() is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._proc is not None:
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                await asyncio.wait_for(self._proc.wait(), 5)

    def get_state(self) -> dict[str, Any]:
        return {"pid": self.pid, "create_time": self.create_time, "port": self.port}

    def load_state(self, state: dict[str, Any]) -> None:
        self.pid = state.get("pid")
        self.create_time = state.get("create_time")
        self.port = state.get("port")
