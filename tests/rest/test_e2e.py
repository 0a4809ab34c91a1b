"""End to end against ``kiln up --demo`` over https: what an orchestrator does, with ``requests``.

The flow is the Airflow provider's and dbt-cloud-cli's: list accounts,
trigger the job, poll the run until it is complete, read its steps, list and
download artifacts, fetch the job's latest manifest. A webhook subscription
made through the v3 routes receives ``job.run.started`` and
``job.run.completed`` signed with its secret; when ``completed`` arrives the
run's artifacts are already downloadable. The certificate is self-signed and
made here; real dbt runs the demo shop project on DuckDB.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import requests

from server import crypto
from server.webhooks import payloads
from tests.conftest import free_port
from tests.kiln_process import KilnProcess, kiln_env
from tests.rest.conftest import Received, Receiver, eventually, write_cert


def orchestrate(url: str, token: str, cert: str, receiver_url: str) -> dict[str, Any]:
    """The client side, synchronous like the Airflow provider (runs in a thread)."""
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    s.verify = cert
    s.headers["Authorization"] = f"Token {token}"
    assert s.get(f"{url}/", timeout=10).status_code == 200
    [account] = s.get(f"{url}/api/v2/accounts/", timeout=10).json()["data"]
    api = f"{url}/api/v2/accounts/{account['id']}"
    [job] = s.get(f"{api}/jobs/", timeout=10).json()["data"]
    sub = s.post(
        f"{url}/api/v3/accounts/{account['id']}/webhooks/subscriptions",
        json={"name": "airflow", "client_url": receiver_url, "event_types": list(
            payloads.EVENT_TYPES), "job_ids": [job["id"]], "active": True},
        timeout=10,
    ).json()["data"]
    resp = s.post(f"{api}/jobs/{job['id']}/run/", json={"cause": "Triggered by Airflow"},
                  timeout=10)
    assert resp.status_code == 200, resp.text
    run = resp.json()["data"]
    assert run["status_humanized"] == "Queued"
    deadline = time.monotonic() + 240
    while True:
        run = s.get(f"{api}/runs/{run['id']}/",
                    params={"include_related": '["trigger","job"]'}, timeout=10).json()["data"]
        if run["is_complete"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    detail = s.get(f"{api}/runs/{run['id']}/", params={"include_related": "run_steps"},
                   timeout=10).json()["data"]
    paths = s.get(f"{api}/runs/{run['id']}/artifacts/", timeout=10).json()["data"]
    results = s.get(f"{api}/runs/{run['id']}/artifacts/run_results.json", timeout=10).json()
    manifest = s.get(f"{api}/jobs/{job['id']}/artifacts/manifest.json", timeout=10)
    return {"account": account, "job": job, "sub": sub, "run": run, "detail": detail,
            "paths": paths, "results": results, "manifest": manifest.status_code}


async def test_orchestrator_flow_over_https(make_database, tmp_path: Path,
                                            receiver: Receiver) -> None:
    cert, key = write_cert(tmp_path)
    data = tmp_path / "data"
    env = kiln_env(
        KILN_DATABASE_URL=make_database(),
        KILN_DATA_DIR=str(data),
        KILN_SECRET_KEY=crypto.generate_key(),
        KILN_HEARTBEAT_INTERVAL="1",
        KILN_WEBHOOK_INTERVAL="0.5",
        # the run worker calls the API at its https URL: it must trust the self-signed cert
        # (the local launcher does not hand it the certificate; see the report)
        SSL_CERT_FILE=str(cert),
    )
    kiln = KilnProcess(["up", "--demo", "--port", str(free_port()), "--tls-cert", str(cert),
                        "--tls-key", str(key)], env=env)
    try:
        await asyncio.to_thread(kiln.wait_ready, 120)
        assert kiln.url is not None and kiln.url.startswith("https://")
        token = json.loads((data / "demo.json").read_text())["token"]
        tls = ssl.create_default_context(cafile=str(cert))
        seen_at_completion: list[Any] = []

        async def on_receive(got: Received) -> None:
            doc = got.json
            if doc["eventType"] != "job.run.completed":
                return
            path = (f"/api/v2/accounts/{doc['accountId']}/runs/{doc['data']['runId']}"
                    "/artifacts/")
            async with aiohttp.ClientSession() as session, session.get(
                kiln.url + path, headers={"Authorization": f"Token {token}"}, ssl=tls
            ) as resp:
                seen_at_completion.append((await resp.json())["data"])

        receiver.on_receive["e2e"] = on_receive
        out = await asyncio.to_thread(orchestrate, kiln.url, token, str(cert),
                                      receiver.hook("e2e"))
        run = out["run"]
        assert run["status"] == 10 and run["status_humanized"] == "Success", (
            run, "".join(kiln.stderr)[-3000:]
        )
        assert run["is_success"] and not run["in_progress"] and run["finished_at"]
        assert run["trigger"]["cause"] == "Triggered by Airflow"
        assert run["job"]["id"] == out["job"]["id"]
        steps = out["detail"]["run_steps"]
        assert [s["name"] for s in steps] == ["Clone", "Invoke dbt with `dbt build`"]
        assert all(s["status_humanized"] == "Success" for s in steps)
        assert "Completed successfully" in steps[1]["logs"]
        assert {"manifest.json", "run_results.json"} <= set(out["paths"])
        assert len(out["results"]["results"]) == 39
        assert out["manifest"] == 200
        # webhooks: started then completed, signed; artifacts stored before completed
        got = await eventually(lambda: len(receiver.got("e2e")) >= 2 and receiver.got("e2e"),
                               timeout=30)
        assert [g.json["eventType"] for g in got] == ["job.run.started", "job.run.completed"]
        for g in got:
            assert payloads.verify(out["sub"]["hmac_secret"], g.body, g.headers["Authorization"])
            assert g.json["data"]["runId"] == str(run["id"])
        assert "manifest.json" in seen_at_completion[0]
    finally:
        receiver.on_receive.pop("e2e", None)
        assert kiln.stop() == 0, "".join(kiln.stderr)[-3000:]
