"""``kiln up --demo`` executes the demo job for real when a run is triggered.

The trigger comes from another process through ``services.runs`` (as the
GraphQL mutation does), on kiln up's own database: nothing in the test process
reaches into kiln up.
"""

from __future__ import annotations

import json
import subprocess
import sys
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
                          "steps": steps, "artifacts": sorted(arts)}))
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
        assert "manifest.json" in result["artifacts"]
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
    finally:
        assert kiln.stop() == 0, "".join(kiln.stderr)[-3000:]
