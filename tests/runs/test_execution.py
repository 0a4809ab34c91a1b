"""End to end: real workers, real dbt, real PostgreSQL and DuckDB.

Each test triggers through ``services.runs`` and waits on the database, the
way a GraphQL client would. Error cases use tiny projects written into tmp
dirs (dbt start-up dominates their time).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import aiohttp
import asyncpg
import psutil

from server.db import credentials
from server.demo import examples_dir
from server.launchers.local import parse_handle
from server.models import Credentials, EnvVar, Job, Run, RunStatus, RunStep
from server.runs.masking import MASK
from server.services import runs
from tests.runs.conftest import Engine, wait_run, write_project

SHOP = examples_dir() / "shop"
SLEEPY = {
    "models/first.sql": "select 1 as id",
    "models/sleepy.py": (
        "def model(dbt, session):\n"
        "    import time\n"
        "    time.sleep(120)\n"
        "    return session.sql('select 1 as id')\n"
    ),
}


async def log_lines(engine: Engine, run_id: int) -> list[asyncpg.Record]:
    async with engine.platform.db.acquire() as conn:
        return await conn.fetch(
            "SELECT seq, step_index, ts, level, message, event_name, node_id FROM log_line"
            " WHERE run_id = $1 ORDER BY seq",
            run_id,
        )


async def steps_of(run_id: int) -> list[tuple[str, int, str | None]]:
    return [
        (s.name, s.status, s.status_message)
        for s in await RunStep.filter(run_id=run_id).order_by("index")
    ]


def workspace(engine: Engine, run_id: int) -> Path:
    (ws,) = list(engine.workdir.glob(f"kiln-run-{run_id}-*"))
    return ws


def run_processes(run_id: int) -> list[psutil.Process]:
    """Processes (dbt, the worker) that still belong to the run."""
    marker = f"kiln-run-{run_id}-"
    out = []
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            env = p.info["environ"] or {}
        except psutil.Error:
            continue
        if marker in cmd or env.get("KILN_RUN_ID") == str(run_id):
            out.append(p)
    return out


async def wait_for_line(engine: Engine, run_id: int, pattern: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(pattern in ln["message"] for ln in await log_lines(engine, run_id)):
            return
        run = await Run.get(id=run_id)
        assert not RunStatus(run.status).is_final, run.status_message
        await __import__("asyncio").sleep(0.2)
    raise AssertionError(f"no log line with {pattern!r}")


async def download(engine: Engine, token: str, run_id: int, path: str, **q: str) -> bytes:
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"{engine.url}/api/runs/{run_id}/artifacts/{path}",
            params=q,
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        assert r.status == 200, await r.text()
        return await r.read()


async def test_shop_build_on_duckdb(engine: Engine, tmp_path: Path) -> None:
    """The demo project: freshness (fails before the first load, does not fail the run),
    build, docs; artifacts byte-identical to dbt's; log lines complete and in order."""
    t = await engine.tenant(
        project_path=str(SHOP), connection_details={"path": str(tmp_path / "shop.duckdb")}
    )
    await Job.filter(id=t.job.id).update(run_freshness=True, generate_docs=True)
    run = await runs.trigger_run(t.actor(), t.job.id)
    done = await wait_run(run.id, 240)
    assert done.status == RunStatus.SUCCESS, done.status_message
    steps = await steps_of(run.id)
    assert [s[0] for s in steps] == [
        "Clone",
        "Invoke dbt with `dbt source freshness`",
        "Invoke dbt with `dbt build`",
        "Invoke dbt with `dbt docs generate`",
    ]
    assert steps[1][1] == RunStatus.ERROR  # no source loaded yet: freshness fails, run goes on
    assert [s[1] for s in steps[2:]] == [RunStatus.SUCCESS] * 2
    assert done.started_at and done.dequeued_at and done.finished_at

    ws = workspace(engine, run.id)
    target = ws / "project" / "target"
    assert not list(ws.glob("kiln-profiles-*")), "profiles.yml must be removed"
    # artifacts: listed, downloadable, byte-identical to what dbt wrote
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"{engine.url}/api/runs/{run.id}/artifacts",
            headers={"Authorization": f"Token {t.token}"},
        ) as r,
    ):
        listed = await r.json()
    paths = {(a["step"], a["path"]) for a in listed}
    assert {(3, "manifest.json"), (3, "run_results.json"), (4, "catalog.json")} <= paths
    assert any(p.startswith("compiled/shop/models/") for _s, p in paths)
    for name in ("run_results.json", "catalog.json"):
        body = await download(engine, t.token, run.id, name)
        assert body == (target / name).read_bytes()
    sql = "compiled/shop/models/marts/dim_customers.sql"
    assert await download(engine, t.token, run.id, sql, step="3") == (target / sql).read_bytes()
    other = await engine.tenant()
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"{engine.url}/api/runs/{run.id}/artifacts/manifest.json",
            headers={"Authorization": f"Bearer {other.token}"},
        ) as r,
    ):
        assert r.status == 404

    # log lines: gap-free seqs, every JSON event dbt logged at info or above, in order
    lines = await log_lines(engine, run.id)
    assert (
        [ln["seq"] for ln in lines]
        == list(range(1, len(lines) + 1))
        == list(range(1, done.log_seq + 1))
    )
    build = [ln for ln in lines if ln["step_index"] == 3]
    events = [ln for ln in build if ln["event_name"]]
    assert events[0]["event_name"] == "MainReportVersion"
    build_results = json.loads(
        await download(engine, t.token, run.id, "run_results.json", step="3")
    )
    ids = {r["unique_id"] for r in build_results["results"]}
    started = [ln["node_id"] for ln in events if ln["event_name"] == "LogStartLine"]
    assert sorted(started) == sorted(ids)
    # dbt's own logs/dbt.log (JSON too) has exactly the same info+ events of this invocation;
    # dbt's threads write file and stdout independently, so order is compared per node
    invocation = build_results["metadata"]["invocation_id"]
    theirs = [
        (d["info"]["name"], d["info"]["msg"], (d["data"].get("node_info") or {}).get("unique_id"))
        for d in map(json.loads, (ws / "project" / "logs" / "dbt.log").read_text().splitlines())
        if d["info"]["invocation_id"] == invocation and d["info"]["level"] != "debug"
    ]
    ours = [(ln["event_name"], ln["message"], ln["node_id"]) for ln in events]
    assert sorted(ours, key=str) == sorted(theirs, key=str)
    for node in ids:
        assert [e for e in ours if e[2] == node] == [e for e in theirs if e[2] == node]
    assert [e for e in ours if e[2] is None] == [e for e in theirs if e[2] is None]


async def test_build_on_postgres(engine: Engine, db_url: str) -> None:
    c = credentials(db_url)
    schema = f"kiln_run_{os.getpid()}_{int(time.time())}"
    t = await engine.tenant(
        project_path=str(SHOP),
        adapter="postgres",
        connection_details={"host": c["host"], "port": c["port"], "dbname": c["database"]},
        credential_fields={"user": c["user"], "schema": schema},
    )
    vault = engine.platform.vault
    await Credentials.filter(id=t.environment.credentials_id).update(  # type: ignore[attr-defined]
        secrets=vault.encrypt(json.dumps({"password": c["password"] or "unused-with-trust"}))
    )
    run = await runs.trigger_run(t.actor(), t.job.id)
    done = await wait_run(run.id, 240)
    assert done.status == RunStatus.SUCCESS, done.status_message
    conn = await asyncpg.connect(**c)
    try:
        n = await conn.fetchval(f'SELECT count(*) FROM "{schema}".dim_customers')
        assert n == 30
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()
    secrets_in_logs = [
        ln for ln in await log_lines(engine, run.id) if "unused-with-trust" in ln["message"]
    ]
    assert secrets_in_logs == []


FAILING = {
    "models/a.sql": "select 1 as id",
    "models/c.sql": "select * from {{ ref('a') }}",
    "models/d.sql": "select 2 as id",
    "tests/check_a.sql": "select * from {{ ref('a') }} where {{ env_var('KILN_T_FAIL', '0') }} = 1",
}


async def test_failing_test_then_retry_runs_only_failed_and_skipped(
    engine: Engine, tmp_path: Path
) -> None:
    proj = write_project(tmp_path / "proj", FAILING)
    t = await engine.tenant(
        project_path=str(proj), connection_details={"path": str(tmp_path / "w.duckdb")}
    )
    env_var = await EnvVar.create(
        account_id=t.account.id,
        project_id=t.project.id,
        job_id=t.job.id,
        name="KILN_T_FAIL",
        value="1",
    )
    run = await runs.trigger_run(t.actor(), t.job.id)
    done = await wait_run(run.id, 180)
    assert done.status == RunStatus.ERROR
    steps = await steps_of(run.id)
    assert steps[-1][0] == "Invoke dbt with `dbt build`" and steps[-1][1] == RunStatus.ERROR
    assert "Failure in test check_a" in (steps[-1][2] or "")
    assert "Failure in test check_a" in (done.status_message or "")

    env_var.value = "0"
    await env_var.save()
    retry = await runs.retry_run(t.actor(), run.id)
    rdone = await wait_run(retry.id, 180)
    assert rdone.status == RunStatus.SUCCESS, rdone.status_message
    assert [s[0] for s in await steps_of(retry.id)] == ["Clone", "Invoke dbt with `dbt retry`"]
    results = json.loads(await download(engine, t.token, retry.id, "run_results.json"))
    assert {(r["unique_id"], r["status"]) for r in results["results"]} == {
        ("test.proj.check_a", "pass"),
        ("model.proj.c", "success"),
    }


async def test_sql_error_masks_secrets_and_runs_of_a_job_are_serial(
    engine: Engine, tmp_path: Path
) -> None:
    proj = write_project(
        tmp_path / "proj",
        {
            "models/bad.sql": "select 1 as id from table_that_does_not_exist",
            # dbt scrubs secrets in its own events; a plain print bypasses that
            "models/leak.py": (
                "def model(dbt, session):\n"
                "    import os\n"
                "    print('the secret is ' + os.environ['DBT_ENV_SECRET_TOKEN'], flush=True)\n"
                "    return session.sql('select 1 as id')\n"
            ),
        },
    )
    t = await engine.tenant(
        project_path=str(proj), connection_details={"path": str(tmp_path / "w.duckdb")}
    )
    await EnvVar.create(
        account_id=t.account.id,
        project_id=t.project.id,
        name="DBT_ENV_SECRET_TOKEN",
        value=engine.platform.vault.encrypt("s3cr3t-Value-42"),
        is_secret=True,
    )
    first = await runs.trigger_run(t.actor(), t.job.id)
    second = await runs.trigger_run(t.actor(), t.job.id)
    a, b = await wait_run(first.id, 180), await wait_run(second.id, 180)
    for r in (a, b):
        assert r.status == RunStatus.ERROR
        assert "table_that_does_not_exist" in (r.status_message or "")
    assert a.finished_at <= b.started_at  # serial: the second waited behind the first
    lines = await log_lines(engine, first.id)
    assert not any("s3cr3t-Value-42" in ln["message"] for ln in lines)
    assert any(f"the secret is {MASK}" in ln["message"] for ln in lines)


async def test_cancel_while_running(engine: Engine, tmp_path: Path) -> None:
    """Also: a project with packages gets an "Install packages" step (a local package)."""
    write_project(tmp_path / "pkg", {"macros/m.sql": "{% macro one() %}1{% endmacro %}"}, "pkg")
    proj = write_project(
        tmp_path / "proj",
        {
            **SLEEPY,
            "packages.yml": f"packages:\n  - local: {tmp_path / 'pkg'}\n",
            "models/first.sql": "select {{ pkg.one() }} as id",
        },
    )
    t = await engine.tenant(
        project_path=str(proj), connection_details={"path": str(tmp_path / "w.duckdb")}
    )
    run = await runs.trigger_run(t.actor(), t.job.id)
    await wait_for_line(engine, run.id, "START python table model")
    t0 = time.monotonic()
    await runs.cancel_run(t.actor(), run.id, engine.platform.db, reason="enough")
    done = await wait_run(run.id, 15)
    elapsed = time.monotonic() - t0
    # the heartbeat long-poll pushes the cancel: no waiting for the next heartbeat
    assert done.status == RunStatus.CANCELLED and elapsed < 6, (elapsed, done.status_message)
    assert done.status_message == "enough"
    assert [(n, st) for n, st, _m in await steps_of(run.id)] == [
        ("Clone", RunStatus.SUCCESS),
        ("Install packages", RunStatus.SUCCESS),
        ("Invoke dbt with `dbt build`", RunStatus.CANCELLED),
    ]
    deadline = time.monotonic() + 5
    while run_processes(run.id) and time.monotonic() < deadline:
        await __import__("asyncio").sleep(0.1)
    assert run_processes(run.id) == []


async def test_timeout_cancels_with_reason(engine: Engine, tmp_path: Path) -> None:
    proj = write_project(tmp_path / "proj", SLEEPY)
    t = await engine.tenant(
        project_path=str(proj), connection_details={"path": str(tmp_path / "w.duckdb")}
    )
    await Job.filter(id=t.job.id).update(timeout_seconds=8)
    run = await runs.trigger_run(t.actor(), t.job.id)
    done = await wait_run(run.id, 60)
    assert done.status == RunStatus.CANCELLED
    assert "Timed out after 8 seconds" in (done.status_message or "")
    assert (done.finished_at - done.started_at).total_seconds() < 8 + 10


async def test_killed_worker_fails_the_run_with_the_signal(engine: Engine, tmp_path: Path) -> None:
    proj = write_project(tmp_path / "proj", SLEEPY)
    t = await engine.tenant(
        project_path=str(proj), connection_details={"path": str(tmp_path / "w.duckdb")}
    )
    run = await runs.trigger_run(t.actor(), t.job.id)
    await wait_for_line(engine, run.id, "START python table model")
    handle = parse_handle((await Run.get(id=run.id)).worker_handle)
    assert handle is not None
    os.kill(handle[0], signal.SIGKILL)
    t0 = time.monotonic()
    done = await wait_run(run.id, 20)
    assert time.monotonic() - t0 < 3 * engine.platform.settings.heartbeat_interval + 5
    assert done.status == RunStatus.ERROR
    assert "SIGKILL" in (done.status_message or ""), done.status_message
    deadline = time.monotonic() + 5
    while run_processes(run.id) and time.monotonic() < deadline:
        await __import__("asyncio").sleep(0.1)
    assert run_processes(run.id) == [], "dbt must not outlive its killed worker"
