"""The worker's internal API: token scoping, spec resolution, idempotent ingest, artifacts."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import aiohttp

from server import crypto
from server.logs import ingest
from server.models import Credentials, EnvVar, Job, Run, RunStatus, RunStep
from server.runs import state
from server.runs.masking import MASK, Masker
from server.services import runs
from tests.factories import make_tenant
from tests.runs.conftest import Engine


async def _starting_run(platform, t, **trigger) -> tuple[Run, str]:
    """A run marked starting with a token, as the dispatcher would (no worker launched)."""
    run = await runs.trigger_run(t.actor(), t.job.id, **trigger)
    token = crypto.new_token("run")
    async with platform.db.acquire() as c:
        await state.transition(
            c,
            run.id,
            RunStatus.STARTING,
            set_fields={"worker_token_hash": crypto.hash_token(token)},
        )
    return run, token


async def _call(engine: Engine, method: str, run_id: int, path: str, token: str | None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as s,
        s.request(
            method, f"{engine.url}/internal/runs/{run_id}/{path}", headers=headers, **kw
        ) as r,
    ):
        body = await r.read()
        return r.status, (
            json.loads(body) if body and r.content_type == "application/json" else body
        )


async def test_token_is_scoped_to_its_run_and_dies_with_it(engine: Engine) -> None:
    a, b = await make_tenant(), await make_tenant()
    run_a, tok_a = await _starting_run(engine.platform, a)
    run_b, _tok_b = await _starting_run(engine.platform, b)
    assert (await _call(engine, "GET", run_a.id, "spec", tok_a))[0] == 200
    for path in ("spec", "heartbeat", "logs", "finish"):
        method = "GET" if path == "spec" else "POST"
        assert (await _call(engine, method, run_b.id, path, tok_a, json={}))[0] == 404
    assert (await _call(engine, "GET", run_a.id, "spec", None))[0] == 404
    assert (await _call(engine, "GET", run_a.id, "spec", "kilnrun_forged"))[0] == 404
    assert (await _call(engine, "GET", run_a.id, "spec", a.token))[0] == 404  # an API token
    status, doc = await _call(engine, "POST", run_a.id, "start", tok_a)
    assert status == 200 and doc == {"status": 3, "cancel": False, "reason": None}
    status, doc = await _call(engine, "POST", run_a.id, "finish", tok_a, json={"status": "success"})
    assert status == 200 and doc["ok"] and doc["status"] == 10
    assert (await _call(engine, "GET", run_a.id, "spec", tok_a))[0] == 404  # final: token dead
    assert (await Run.get(id=run_b.id)).status == RunStatus.STARTING


async def test_spec_resolves_overrides_env_vars_and_secrets(engine: Engine) -> None:
    vault = engine.platform.vault
    t = await make_tenant(credential_fields={"schema": "analytics", "user": "bob"})
    await Credentials.filter(id=t.environment.credentials_id).update(  # type: ignore[attr-defined]
        secrets=vault.encrypt(json.dumps({"password": "pw-123"}))
    )
    await Job.filter(id=t.job.id).update(threads=3)
    base = {"account_id": t.account.id, "project_id": t.project.id}
    other = await Job.create(
        account_id=t.account.id,
        project_id=t.project.id,
        environment_id=t.environment.id,
        name="other",
        steps=["dbt run"],
    )
    await EnvVar.create(**base, name="LEVEL", value="project")
    await EnvVar.create(**base, environment_id=t.environment.id, name="LEVEL", value="env")
    await EnvVar.create(**base, job_id=t.job.id, name="LEVEL", value="job")
    await EnvVar.create(**base, job_id=other.id, name="ONLY_OTHER", value="x")
    await EnvVar.create(**base, name="PLAIN", value="p")
    await EnvVar.create(
        **base, name="DBT_ENV_SECRET_KEY", value=vault.encrypt("sekrit"), is_secret=True
    )
    run, tok = await _starting_run(
        engine.platform, t, overrides=runs.RunOverrides(target="ci", git_branch="feature")
    )
    status, spec = await _call(engine, "GET", run.id, "spec", tok)
    assert status == 200
    assert spec["env"] == {"LEVEL": "job", "PLAIN": "p", "DBT_ENV_SECRET_KEY": "sekrit"}
    assert spec["secret_env_names"] == ["DBT_ENV_SECRET_KEY"]
    assert spec["target"] == {"name": "ci", "threads": 3, "schema": "analytics", "vars": None}
    assert spec["credentials"] == {
        "fields": {"schema": "analytics", "user": "bob"},
        "secrets": {"password": "pw-123"},
    }
    assert spec["project"]["branch"] == "feature"
    assert spec["steps"] == [{"command": "dbt build", "kind": "dbt"}]


async def test_logs_are_idempotent_masked_and_notified(engine: Engine) -> None:
    vault = engine.platform.vault
    t = await make_tenant()
    await EnvVar.create(
        account_id=t.account.id,
        project_id=t.project.id,
        name="DBT_ENV_SECRET_X",
        value=vault.encrypt("hunter2"),
        is_secret=True,
    )
    run, tok = await _starting_run(engine.platform, t)
    listener = await engine.platform.db.connect()
    notes: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(ingest.CHANNEL, lambda *a: notes.put_nowait(a[3]))
    now = datetime.now(UTC).isoformat()

    def line(seq: int, msg: str) -> dict:
        return {
            "seq": seq,
            "step": 2,
            "ts": now,
            "level": "warn",
            "message": msg,
            "eventName": "X" if seq % 2 else None,
            "nodeId": "model.p.a" if seq == 1 else None,
        }

    try:
        batch = [line(1, "one"), line(2, "the password is hunter2!")]
        for _ in range(2):  # a retried batch stores nothing twice and notifies once
            status, _doc = await _call(engine, "POST", run.id, "logs", tok, json={"lines": batch})
            assert status == 200
        assert await asyncio.wait_for(notes.get(), 5) == f"{run.id}:2"
        status, _ = await _call(
            engine, "POST", run.id, "logs", tok, json={"lines": [line(2, "dup"), line(3, "x")]}
        )
        assert await asyncio.wait_for(notes.get(), 5) == f"{run.id}:3"
        assert notes.empty()
        bad = [{"seq": 0, "ts": now, "message": "x"}]
        assert (await _call(engine, "POST", run.id, "logs", tok, json={"lines": bad}))[0] == 400
    finally:
        await listener.close()
    async with engine.platform.db.acquire() as c:
        rows = await c.fetch(
            "SELECT seq, step_index, level, message, event_name, node_id FROM log_line"
            " WHERE run_id = $1 ORDER BY seq",
            run.id,
        )
        assert await c.fetchval("SELECT log_seq FROM run WHERE id = $1", run.id) == 3
    assert [tuple(r) for r in rows] == [
        (1, 2, "warn", "one", "X", "model.p.a"),
        (2, 2, "warn", f"the password is {MASK}!", None, None),
        (3, 2, "warn", "x", "X", None),
    ]


def test_masker() -> None:
    m = Masker(["abc", "abcdef", "", "a.b"])
    assert m("xx abcdef abc a.b axb") == f"xx {MASK} {MASK} {MASK} axb"
    assert Masker([])("abc") == "abc" and not Masker([""])


async def test_steps_and_artifacts(engine: Engine) -> None:
    t = await make_tenant()
    run, tok = await _starting_run(engine.platform, t)
    steps = [
        {"index": 1, "name": "Clone", "kind": "clone", "status": 3},
        {"index": 2, "name": "Invoke dbt with `dbt build`", "kind": "dbt", "command": "dbt build"},
    ]
    assert (await _call(engine, "POST", run.id, "steps", tok, json={"steps": steps}))[0] == 200
    done = [
        {"index": 1, "name": "Clone", "status": 10},
        {"index": 2, "name": "x", "status": 20, "message": "boom"},
    ]
    assert (await _call(engine, "POST", run.id, "steps", tok, json={"steps": done}))[0] == 200
    rows = await RunStep.filter(run_id=run.id).order_by("index")
    assert [(s.name, s.status, s.status_message) for s in rows] == [
        ("Clone", 10, None),
        ("x", 20, "boom"),
    ]
    assert rows[0].started_at and rows[0].finished_at
    # a final step does not move again
    again = [{"index": 2, "name": "y", "status": 3}]
    await _call(engine, "POST", run.id, "steps", tok, json={"steps": again})
    assert (await RunStep.get(run_id=run.id, index=2)).name == "x"

    body = bytes(range(256)) * 5000
    status, info = await _call(
        engine, "PUT", run.id, "artifacts/2/compiled/p/models/a.sql", tok, data=body
    )
    assert status == 200 and info["size"] == len(body)
    assert info["key"] == f"artifacts/{t.account.id}/{run.id}/2/compiled/p/models/a.sql"
    for bad in ("artifacts/2/..%2Fx", "artifacts/x/a.json"):
        assert (await _call(engine, "PUT", run.id, bad, tok, data=b"x"))[0] in (400, 404)
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"{engine.url}/api/runs/{run.id}/artifacts/compiled/p/models/a.sql",
            headers={"Authorization": f"Bearer {t.token}"},
        ) as r,
    ):
        assert r.status == 200 and await r.read() == body
        import hashlib

        assert r.headers["X-Kiln-Sha256"] == hashlib.sha256(body).hexdigest()
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{engine.url}/api/runs/{run.id}/artifacts/compiled/p/models/a.sql") as r,
    ):
        assert r.status == 401
    # a retry run reads its previous run's artifacts, and only those
    async with engine.platform.db.acquire() as c:
        await state.transition(c, run.id, RunStatus.ERROR, message="boom")
    retry = await runs.retry_run(t.actor(), run.id)
    token = crypto.new_token("run")
    async with engine.platform.db.acquire() as c:
        await state.transition(
            c,
            retry.id,
            RunStatus.STARTING,
            set_fields={"worker_token_hash": crypto.hash_token(token)},
        )
    status, got = await _call(
        engine, "GET", retry.id, "previous-artifacts/2/compiled/p/models/a.sql", token
    )
    assert status == 200 and got == body
    assert (await _call(engine, "GET", retry.id, "previous-artifacts/1/x.json", token))[0] == 404


async def test_heartbeat_long_poll_answers_at_once_on_cancel(engine: Engine) -> None:
    t = await make_tenant()
    run, tok = await _starting_run(engine.platform, t)
    t0 = asyncio.get_running_loop().time()
    status, doc = await _call(engine, "POST", run.id, "heartbeat?wait=0.3", tok)
    assert status == 200 and doc == {"cancel": False, "reason": None, "waited": True}
    assert asyncio.get_running_loop().time() - t0 >= 0.3
    poll = asyncio.create_task(_call(engine, "POST", run.id, "heartbeat?wait=20", tok))
    await asyncio.sleep(0.3)
    t0 = asyncio.get_running_loop().time()
    await runs.cancel_run(t.actor(), run.id, engine.platform.db, reason="now")
    status, doc = await asyncio.wait_for(poll, 5)
    assert doc == {"cancel": True, "reason": "now", "waited": True}
    assert asyncio.get_running_loop().time() - t0 < 2
