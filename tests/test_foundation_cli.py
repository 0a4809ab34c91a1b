"""``kiln up --demo`` end to end on embedded PostgreSQL, and the CLI's bad-input errors."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_port
from tests.kiln_process import KilnProcess, kiln_env, run_kiln

DEMO_KEYS = {
    "url",
    "token",
    "account_id",
    "account_pk",
    "project_id",
    "environment_id",
    "job_id",
    "job_pk",
}


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _postgres_of(data_dir: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if p.info["name"] == "postgres" and str(data_dir) in " ".join(p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            pass
    return found


def test_up_demo_end_to_end(tmp_path: Path) -> None:
    data_dir = tmp_path / "kiln"
    port = free_port()
    args = ["up", "--demo", "--data-dir", str(data_dir), "--port", str(port)]

    first = KilnProcess(args)
    try:
        t_first = first.wait_ready()
        assert first.url == f"http://127.0.0.1:{port}"
        status, body = _get(f"{first.url}/readyz")
        assert status == 200, body
        assert _get(f"{first.url}/healthz")[0] == 200
        demo = json.loads((data_dir / "demo.json").read_text())
        assert DEMO_KEYS <= demo.keys()
        assert isinstance(demo["account_pk"], int) and isinstance(demo["job_pk"], int)
        assert (data_dir / "demo.json").stat().st_mode & 0o777 == 0o600
        # an admin command reaches the same database while `up` runs
        out = run_kiln(["admin", "create-account", "side", "--data-dir", str(data_dir)])
        assert out.returncode == 0, out.stderr
    finally:
        assert first.stop() == 0, "".join(first.stderr)
    assert "Traceback" not in "".join(first.stderr)
    time.sleep(0.5)
    assert _postgres_of(data_dir) == [], "postgres left running after SIGTERM"

    second = KilnProcess(args)
    try:
        t_second = second.wait_ready()
        again = json.loads((data_dir / "demo.json").read_text())
        for key in DEMO_KEYS - {"token"}:
            assert again[key] == demo[key], key
        assert again["token"] == demo["token"]  # still valid, so reused
        dup = run_kiln(["admin", "create-account", "side", "--data-dir", str(data_dir)])
        assert dup.returncode != 0 and "already exists" in dup.stderr
    finally:
        assert second.stop() == 0
    time.sleep(0.5)
    assert _postgres_of(data_dir) == []
    print(f"first start {t_first:.1f}s, restart {t_second:.1f}s")


def test_admin_commands(tmp_path: Path, db_url: str) -> None:
    env = kiln_env(KILN_DATABASE_URL=db_url, KILN_DATA_DIR=str(tmp_path))
    assert run_kiln(["admin", "create-account", "acme"], env=env).returncode == 0
    r = run_kiln(
        [
            "admin",
            "create-user",
            "ann@acme.io",
            "--account",
            "acme",
            "--role",
            "developer",
            "--password-stdin",
        ],
        env=env,
        input="long-enough-pw\n",
    )
    assert r.returncode == 0, r.stderr
    r = run_kiln(
        ["admin", "create-token", "--account", "acme", "--name", "ci", "--role", "job_runner"],
        env=env,
    )
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("kiln_") and len(token) > 30
    r = run_kiln(
        ["admin", "create-token", "--account", "acme", "--name", "x", "--role", "god"], env=env
    )
    assert r.returncode != 0 and "unknown role" in r.stderr and "Traceback" not in r.stderr
    r = run_kiln(
        ["admin", "create-user", "not-an-email", "--account", "acme", "--role", "viewer"], env=env
    )
    assert r.returncode != 0 and "invalid email" in r.stderr
    r = run_kiln(
        ["admin", "create-token", "--account", "nope", "--name", "x", "--role", "viewer"], env=env
    )
    assert r.returncode != 0 and "no account named" in r.stderr


@pytest.mark.parametrize(
    ("args", "env_extra", "expect"),
    [
        (["up", "--bogus"], {}, "unrecognized arguments"),
        (["up"], {"KILN_DATABASE_URL": "http://nope"}, "KILN_DATABASE_URL"),
        (["up", "--port", "99999"], {}, "--port"),
        (["migrate"], {"KILN_DATABASE_URL": "postgres://postgres@127.0.0.1:1/x"}, "cannot connect"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path: Path, args, env_extra, expect) -> None:
    env = kiln_env(KILN_DATA_DIR=str(tmp_path / "d"), **env_extra)
    r = run_kiln(args, env=env, timeout=60)
    assert r.returncode != 0
    assert expect in r.stderr
    assert "Traceback" not in r.stderr


def test_unwritable_data_dir_and_port_in_use(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run_kiln(["up", "--data-dir", str(blocker / "sub")])
    assert r.returncode != 0 and "not writable" in r.stderr and "Traceback" not in r.stderr

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        data_dir = tmp_path / "d2"
        r = run_kiln(["up", "--data-dir", str(data_dir), "--port", str(port)])
        assert r.returncode != 0 and "cannot listen" in r.stderr and "Traceback" not in r.stderr
        assert not (data_dir / "pg").exists()  # failed before creating anything


def test_gateway_and_scheduler_as_separate_processes(tmp_path: Path, make_database) -> None:
    """The production topology: the API in `kiln gateway`, dispatch in `kiln scheduler`.

    On a database of its own: the scheduler dispatches every queued run it finds.
    """
    import shutil

    from tests.conftest import ROOT

    db_url = make_database()  # the gateway applies the migrations on start

    shop = tmp_path / "shop"
    shutil.copytree(ROOT / "examples" / "shop", shop)
    env = kiln_env(KILN_DATABASE_URL=db_url, KILN_DATA_DIR=str(tmp_path / "data"))
    assert run_kiln(["admin", "create-account", "split"], env=env).returncode == 0
    r = run_kiln(
        ["admin", "create-token", "--account", "split", "--name", "ci", "--role", "owner"], env=env
    )
    token = r.stdout.strip().splitlines()[-1]
    port = free_port()
    # workers started by the scheduler reach the API at the gateway's address
    env["KILN_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    gateway = KilnProcess(["gateway", "--port", str(port)], env=env)
    sched_port = free_port()
    scheduler = KilnProcess(["scheduler", "--port", str(sched_port)], env=env)
    try:
        gateway.wait_ready()
        assert _get(f"{gateway.url}/readyz")[0] == 200

        def gql(query: str, variables: dict | None = None) -> dict:
            req = urllib.request.Request(
                f"{gateway.url}/graphql",
                method="POST",
                data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=30) as resp:
                body = json.loads(resp.read())
            assert not body.get("errors"), body
            return body["data"]

        project = gql(
            """mutation($i: CreateProjectInput!) { createProject(input: $i) {
            project { id } errors { message } } }""",
            {"i": {"name": "shop", "bundledPath": str(shop)}},
        )["createProject"]
        assert not project["errors"], project
        pid = project["project"]["id"]
        conn = gql(
            """mutation($i: CreateConnectionInput!) { createConnection(input: $i) {
            connection { id } errors { message } } }""",
            {
                "i": {
                    "name": "duck",
                    "adapterType": "duckdb",
                    "details": {"path": str(tmp_path / "wh.duckdb")},
                }
            },
        )["createConnection"]
        assert not conn["errors"], conn
        envm = gql(
            """mutation($i: CreateEnvironmentInput!) { createEnvironment(input: $i) {
            environment { id } errors { message } } }""",
            {
                "i": {
                    "projectId": pid,
                    "name": "prod",
                    "kind": "deployment",
                    "connectionId": conn["connection"]["id"],
                }
            },
        )["createEnvironment"]
        assert not envm["errors"], envm
        job = gql(
            """mutation($i: CreateJobInput!) { createJob(input: $i) {
            job { id } errors { message } } }""",
            {
                "i": {
                    "environmentId": envm["environment"]["id"],
                    "name": "build",
                    "steps": ["dbt seed"],
                }
            },
        )["createJob"]
        assert not job["errors"], job
        run = gql(
            """mutation($j: ID!) { triggerJobRun(jobId: $j, cause: "split test") {
            run { id } errors { message } } }""",
            {"j": job["job"]["id"]},
        )["triggerJobRun"]
        assert not run["errors"], run
        scheduler.wait_ready_line("scheduler is ready")
        deadline = time.monotonic() + 120
        while True:
            status = gql(
                "query($r: ID!) { run(id: $r) { status statusMessage } }", {"r": run["run"]["id"]}
            )["run"]
            if status["status"] in ("success", "error", "cancelled"):
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert status["status"] == "success", (status, "".join(scheduler.stderr)[-2000:])
    finally:
        assert gateway.stop() == 0, "".join(gateway.stderr)[-3000:]
        assert scheduler.stop() == 0, "".join(scheduler.stderr)[-3000:]
