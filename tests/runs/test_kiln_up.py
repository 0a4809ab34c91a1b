"""``kiln up --demo`` executes the demo job for real when a run is triggered.

The trigger comes from another process through ``services.runs`` (as the
GraphQL mutation does), on kiln up's own database: nothing in the test process
reaches into kiln up. Then the public path: GraphQL ``triggerJobRun`` and
``cancelRun`` over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from server import crypto
from tests.conftest import free_port
from tests.kiln_process import ROOT, KilnProcess, kiln_env

TRIGGER = """
import asyncio, json, sys, time
from server.config import load_settings
from server.models import Artifact, Run, RunStep
from server.platform import Platform
from server.services import runs
from server.services.actor import system_actor

async def main():
    p = await Platform.open(load_settings(), apply_migrations=False)
    try:
        demo = json.load(open(sys.argv[1]))
        t0 = time.monotonic()
        run = await runs.trigger_run(system_actor(demo["account_pk"]), demo["job_pk"])
        while True:
            run = await Run.get(id=run.id)
            if run.status >= 10 or time.monotonic() - t0 > 240:
                break
            await asyncio.sleep(0.3)
        steps = await RunStep.filter(run_id=run.id).order_by("index").values_list("name", "status")
        arts = await Artifact.filter(run_id=run.id).values_list("path", flat=True)
        print(json.dumps({"id": run.id, "status": run.status, "message": run.status_message,
                          "steps": steps, "artifacts": sorted(arts),
                          "saved": run.artifacts_saved}))
    finally:
        await p.close()

asyncio.run(main())
"""


def test_kiln_up_demo_runs_the_shop_job(make_database, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = kiln_env(
        KILN_DATABASE_URL=make_database(),
        KILN_DATA_DIR=str(data),
        KILN_SECRET_KEY=crypto.generate_key(),
        KILN_HEARTBEAT_INTERVAL="1",
    )
    port = free_port()
    kiln = KilnProcess(["up", "--demo", "--port", str(port)], env=env)
    try:
        kiln.wait_ready(120)
        out = subprocess.run(
            [sys.executable, "-c", TRIGGER, str(data / "demo.json")],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["status"] == 10, (result, "".join(kiln.stderr)[-3000:])
        assert result["steps"] == [["Clone", 10], ["Invoke dbt with `dbt build`", 10]]
        assert "manifest.json" in result["artifacts"] and result["saved"] is True
        token = json.loads((data / "demo.json").read_text())["token"]
        req = urllib.request.Request(
            f"{kiln.url}/api/runs/{result['id']}/artifacts/run_results.json",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            doc = json.loads(resp.read())
        assert len(doc["results"]) == 39 and all(
            r["status"] in ("success", "pass") for r in doc["results"]
        )
        # the public path: GraphQL triggerJobRun, then cancelRun while dbt runs
        demo = json.loads((data / "demo.json").read_text())
        trig = _gql(
            kiln.url,
            token,
            'mutation($j: ID!) { triggerJobRun(jobId: $j, cause: "gql") '
            "{ run { id statusCode } errors { message } } }",
            {"j": demo["job_id"]},
        )["triggerJobRun"]
        assert trig["errors"] == [], trig
        run_id = trig["run"]["id"]
        query = "query($r: ID!) { run(id: $r) { statusCode statusMessage artifactsSaved } }"
        deadline = time.monotonic() + 60
        while _gql(kiln.url, token, query, {"r": run_id})["run"]["statusCode"] != 3:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.2)
        time.sleep(2)  # let dbt get going
        t0 = time.monotonic()
        cancel = _gql(
            kiln.url,
            token,
            'mutation($r: ID!) { cancelRun(id: $r, reason: "stop") { errors { message } } }',
            {"r": run_id},
        )["cancelRun"]
        assert cancel["errors"] == [], cancel
        while (run := _gql(kiln.url, token, query, {"r": run_id})["run"])["statusCode"] != 30:
            assert time.monotonic() - t0 < 10, run
            time.sleep(0.2)
        assert run["statusMessage"] == "stop"
    finally:
        assert kiln.stop() == 0, "".join(kiln.stderr)[-3000:]


def _gql(url: str, token: str, query: str, variables: dict) -> dict:
    req = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        doc = json.loads(resp.read())
    assert not doc.get("errors"), doc
    return doc["data"]
