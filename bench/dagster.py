"""Dagster, the anchor of the GraphQL and live-log rows, in a venv of its own.

Dagster's pins must not touch Kiln's, so it is installed on demand (full mode
only) under ``~/.cache/kiln-bench/dagster-venv`` and driven through small
harness scripts run by that venv's Python. When it cannot be installed the
rows fall back to the figures recorded on this kind of machine and say so.

:func:`serve_run_list` starts Dagster's webserver on its default storage
(SQLite under a fresh ``DAGSTER_HOME``) seeded with as many runs as Kiln's
GraphQL row lists from, for the load generator of ``bench.graphql``.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

DAGSTER_VENV = Path.home() / ".cache" / "kiln-bench" / "dagster-venv"
DAGSTER_VERSION = "1.13.*"

# Dagster's run list in its lightest useful form: status, job name and tags of
# each run. Kiln's row also loads each run's steps and its job's environment;
# asking Dagster for step stats or start/end times instead makes it resolve
# them run by run (7 to 15 times slower per request here), so they are left out.
RUN_LIST_QUERY = (
    "{ runsOrError(limit: 50) { ... on Runs { results { id runId status jobName "
    "tags { key value } } } } }"
)

_RUN_LIST_HARNESS = r'''"""Dagster's webserver over RUNS runs (SQLite) on PORT till stdin closes."""
import os, subprocess, sys, tempfile, time, urllib.request, uuid
from pathlib import Path

RUNS, PORT = int(sys.argv[1]), int(sys.argv[2])
home = Path(tempfile.mkdtemp(prefix="kiln-bench-dagster-runs-"))
(home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
os.environ["DAGSTER_HOME"] = str(home)
defs = home / "defs.py"
defs.write_text("""
from dagster import job, op

@op
def seed(): ...

@op
def run(): ...

@op
def test(): ...

def make(i):
    @job(name=f"job_{i}")
    def j():
        seed(); run(); test()
    return j

jobs = [make(i) for i in range(5)]
""")

from dagster import DagsterInstance
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

statuses = [DagsterRunStatus.SUCCESS] * 3 + [DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
instance = DagsterInstance.get()
for i in range(RUNS):
    instance.add_run(
        DagsterRun(job_name=f"job_{i % 5}", run_id=str(uuid.uuid4()), status=statuses[i % 5])
    )
web = subprocess.Popen(
    [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1",
     "-p", str(PORT), "-f", str(defs)],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
try:
    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/server_info", timeout=2).read()
            break
        except Exception:
            time.sleep(0.5)
    print(f"READY {PORT}", flush=True)
    sys.stdin.read()
finally:
    web.terminate()
    web.wait(10)
'''


def dagster_python() -> Path | None:
    """The Dagster venv's Python, installing it first if needed; None if it cannot be."""
    py = DAGSTER_VENV / "bin" / "python"
    if not (DAGSTER_VENV / "bin" / "dagster-webserver").exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(DAGSTER_VENV)], check=True)
            subprocess.run(
                [
                    str(py),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    f"dagster=={DAGSTER_VERSION}",
                    f"dagster-webserver=={DAGSTER_VERSION}",
                    "websockets",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=900,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"   Dagster not installable ({exc}); recorded figures", file=sys.stderr)
            return None
    return py


class DagsterRunList:
    """A running Dagster webserver seeded with runs; ``stop()`` ends it."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, script: Path) -> None:
        self.proc = proc
        self.port = port
        self._script = script

    async def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self._script.unlink(missing_ok=True)


async def start_harness(script: str, *args: str) -> tuple[asyncio.subprocess.Process, Path] | None:
    """``script`` run by the Dagster venv's Python with ``args`` (stdin and stdout piped)
    and the file holding it, for the caller to delete once the process has ended; None
    when Dagster cannot be installed. Blocks while installing: nothing is measured then."""
    py = dagster_python()
    if py is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    proc = await asyncio.create_subprocess_exec(
        str(py),
        f.name,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return proc, Path(f.name)


async def serve_run_list(runs: int, port: int) -> DagsterRunList | None:
    """Dagster's webserver on ``port`` over ``runs`` runs, or None (not installable, or it
    did not come up within 5 minutes)."""
    started = await start_harness(_RUN_LIST_HARNESS, str(runs), str(port))
    if started is None:
        return None
    proc, script = started
    served = DagsterRunList(proc, port, script)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 300)
    except TimeoutError:
        line = b""
    if not line.startswith(b"READY"):
        await served.stop()
        print("   Dagster's webserver did not start; recorded figures", file=sys.stderr)
        return None
    return served
