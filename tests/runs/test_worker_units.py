"""Worker parts without a server: adaptive log batching, dbt line parsing, profiles,
the local launcher's process-group handling, and the no-database-import rule."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import yaml

from server.launchers.base import LaunchSpec, WorkerState
from server.launchers.local import LocalRunLauncher, worker_env
from server.worker import dbt
from server.worker.logship import LogShipper
from tests.kiln_process import ROOT


async def test_first_line_leaves_at_once_then_lines_coalesce_while_a_send_is_in_flight() -> None:
    sent: list[list[int]] = []
    gate = asyncio.Event()

    async def send(batch: list[dict]) -> None:
        sent.append([ln["seq"] for ln in batch])
        if len(sent) == 1:
            await gate.wait()  # the first send is slow

    ship = LogShipper(send, max_batch=3)
    ship.start()
    ship.put_nowait({"message": "a"})
    await asyncio.sleep(0.01)
    assert sent == [[1]]  # no waiting for company
    for m in "bcdef":
        ship.put_nowait({"message": m})
    await asyncio.sleep(0.01)
    assert sent == [[1]]  # in flight: the rest waits
    gate.set()
    await ship.close()
    assert sent == [[1], [2, 3, 4], [5, 6]]  # bounded batches, in order
    assert ship.sent == 6


async def test_retried_sends_keep_seqs_and_failure_does_not_hang() -> None:
    attempts: list[list[int]] = []

    async def flaky(batch: list[dict]) -> None:
        attempts.append([ln["seq"] for ln in batch])
        if len(attempts) == 1:
            raise ConnectionError("gave up")

    ship = LogShipper(flaky)
    ship.start()
    ship.put_nowait({"message": "x"})
    await ship.close()
    assert ship.failed is not None and attempts == [[1]]


async def test_backpressure_bounds_pending_lines() -> None:
    release = asyncio.Event()

    async def send(batch: list[dict]) -> None:
        await release.wait()

    ship = LogShipper(send, max_batch=10, max_pending=20)
    ship.start()
    accepted = 0
    while True:  # a stalled API: put blocks once 20 wait (the first line is in flight)
        put = asyncio.create_task(ship.put({"message": "x"}))
        await asyncio.sleep(0.01)
        if not put.done():
            break
        accepted += 1
    assert accepted == 21
    release.set()
    await asyncio.wait_for(put, 2)
    await ship.close()
    assert ship.sent == 22


def test_parse_line() -> None:
    raw = json.dumps(
        {
            "info": {"name": "LogStartLine", "level": "info", "msg": "1 of 2 START", "ts": "T"},
            "data": {"node_info": {"unique_id": "model.p.a"}},
        }
    )
    assert dbt.parse_line(raw + "\n") == {
        "ts": "T",
        "level": "info",
        "message": "1 of 2 START",
        "eventName": "LogStartLine",
        "nodeId": "model.p.a",
    }
    plain = dbt.parse_line("Traceback (most recent call last):\n")
    assert plain["message"] == "Traceback (most recent call last):" and plain["eventName"] is None
    assert dbt.parse_line("{not json")["message"] == "{not json"


def test_profiles_are_private_and_adapter_shaped(tmp_path: Path) -> None:
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: shop\n")
    spec = {
        "connection": {"adapter_type": "postgres", "details": {"host": "h", "database": "d"}},
        "credentials": {"fields": {"username": "u", "schema": "s"}, "secrets": {"password": "pw"}},
        "target": {"name": "prod", "threads": 2, "schema": None},
    }
    d = dbt.write_profiles(spec, tmp_path, base=tmp_path)
    path = d / "profiles.yml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(d.stat().st_mode) == 0o700
    assert yaml.safe_load(path.read_text()) == {
        "shop": {
            "target": "prod",
            "outputs": {
                "prod": {
                    "type": "postgres",
                    "host": "h",
                    "dbname": "d",
                    "user": "u",
                    "schema": "s",
                    "password": "pw",
                    "port": 5432,
                    "threads": 2,
                }
            },
        }
    }
    argv = dbt.command_argv(
        "dbt build -s 'tag:x'", profiles_dir=d, project_dir=tmp_path, target="prod"
    )
    assert argv[1:] == [
        "--log-format",
        "json",
        "--no-use-colors",
        "build",
        "-s",
        "tag:x",
        "--profiles-dir",
        str(d),
        "--project-dir",
        str(tmp_path),
        "--target",
        "prod",
    ]


def test_worker_env_drops_server_secrets() -> None:
    base = {
        "PATH": "/bin",
        "KILN_DATABASE_URL": "postgres://x",
        "KILN_SECRET_KEY": "k",
        "KILN_S3_SECRET_ACCESS_KEY": "s",
        "PGPASSWORD": "p",
        "DBT_ENV_SECRET_A": "a",
        "KILN_LOG_LEVEL": "DEBUG",
    }
    spec = LaunchSpec(run_id=7, account_id=1, job_id=2, token="kilnrun_t", api_url="http://a")
    env = worker_env(base, spec)
    assert env["KILN_RUN_TOKEN"] == "kilnrun_t" and env["KILN_RUN_ID"] == "7"
    assert env["KILN_LOG_LEVEL"] == "DEBUG" and env["PATH"] == "/bin"
    for k in (
        "KILN_DATABASE_URL",
        "KILN_SECRET_KEY",
        "KILN_S3_SECRET_ACCESS_KEY",
        "PGPASSWORD",
        "DBT_ENV_SECRET_A",
    ):
        assert k not in env


def test_worker_imports_no_database_code() -> None:
    code = (
        "import sys; import server.worker.main; "
        "bad = [m for m in ('asyncpg', 'tortoise', 'server.db', 'server.models') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]"


async def test_local_launcher_kills_the_whole_group(settings, tmp_path: Path) -> None:
    # a "worker" that starts a grandchild (like dbt) and ignores SIGTERM
    script = tmp_path / "w.py"
    script.write_text(
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen(['sleep', '60'])\n"
        "time.sleep(60)\n"
    )
    launcher = LocalRunLauncher(
        settings, command=[sys.executable, str(script)], terminate_grace=0.5
    )
    spec = LaunchSpec(run_id=424242, account_id=1, job_id=1, token="kilnrun_x", api_url="http://a")
    handle = await launcher.launch(spec)
    assert await launcher.launch(spec) == handle  # idempotent
    pid = int(handle.split(":")[0])
    assert "kilnrun_x" not in " ".join(psutil.Process(pid).cmdline())
    for _ in range(100):
        if psutil.Process(pid).children():
            break
        await asyncio.sleep(0.05)
    child = psutil.Process(pid).children()[0]
    assert (await launcher.check_health(spec.run_id, handle)).state == WorkerState.RUNNING
    other = LocalRunLauncher(settings)  # another process's view: psutil, not Popen
    assert (await other.check_health(spec.run_id, handle)).state == WorkerState.RUNNING
    await launcher.terminate(spec.run_id, handle)
    health = await launcher.check_health(spec.run_id, handle)
    assert health.state == WorkerState.EXITED and "SIGKILL" in (health.reason or "")
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert (await other.check_health(spec.run_id, handle)).state == WorkerState.MISSING
    await launcher.terminate(spec.run_id, handle)  # idempotent
    with __import__("contextlib").suppress(ProcessLookupError):
        os.killpg(pid, 0)
        raise AssertionError("group still alive")


async def test_materialize_git_clone_records_the_sha(tmp_path: Path) -> None:
    from server.worker.project import materialize

    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "sub" / "dbt_project.yml").write_text("name: p\n")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.email=t@e", "-c", "user.name=t", *args],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    first = git("rev-parse", "HEAD")
    (repo / "sub" / "models.sql").write_text("select 1")
    git("add", ".")
    git("commit", "-q", "-m", "two")
    head = git("rev-parse", "HEAD")
    lines: list[str] = []
    url = repo.as_uri()
    project = {"repository_url": url, "branch": "main", "subdirectory": "sub"}
    pdir, sha, branch = await materialize(project, tmp_path / "c1", lines.append)
    assert (sha, branch) == (head, "main") and (pdir / "models.sql").exists()
    assert pdir == tmp_path / "c1" / "sub"
    pdir, sha, _ = await materialize({**project, "sha": first}, tmp_path / "c2", lines.append)
    assert sha == first and not (pdir / "models.sql").exists()
    import pytest

    from server.worker.project import CheckoutError

    with pytest.raises(CheckoutError):
        await materialize({**project, "branch": "nope"}, tmp_path / "c3", lines.append)
    with pytest.raises(CheckoutError):
        await materialize({**project, "subdirectory": "../x"}, tmp_path / "c4", lines.append)
