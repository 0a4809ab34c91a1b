"""REST API v2 against an in-process gateway: every endpoint's happy path and its errors.

Each JSON answer is also validated against the OpenAPI description (``Api``).
"""

from __future__ import annotations

import dataclasses
import json

import aiohttp

from server.models import Job, Run, RunStatus
from server.platform import Platform
from server.services import accounts
from tests.factories import make_tenant
from tests.rest.conftest import Api, base, finish_run, queued_run, start_gateway

MANIFEST = json.dumps({"metadata": {"dbt_version": "1.11.0"}, "nodes": {}}).encode()


async def test_root_and_openapi(api: Api) -> None:
    assert (await api.get("/")).status == 200
    spec = (await api.get("/api/v2/openapi.json")).json
    assert spec["openapi"].startswith("3.") and any("/runs/" in p for p in spec["paths"])


async def test_authentication(api: Api, tenant) -> None:
    path = base(tenant) + "/jobs/"
    r = await api.get(path)
    assert r.status == 401 and r.json["status"]["is_success"] is False
    assert r.json["status"]["code"] == 401 and r.json["data"] is None
    assert (await api.get(path, "kiln_not-a-real-token")).status == 401
    assert (await api.get(path, tenant.token, scheme="Basic")).status == 401
    for scheme in ("Token", "Bearer", "token"):
        r = await api.get(path, tenant.token, scheme=scheme)
        assert r.status == 200, (scheme, r.json)
        assert r.json["status"] == {
            "code": 200, "is_success": True, "user_message": "Success!", "developer_message": ""
        }


async def test_accounts(api: Api, tenant) -> None:
    other = await make_tenant()
    r = await api.get("/api/v2/accounts/", tenant.token)
    assert [a["id"] for a in r.data] == [tenant.account.id]
    assert r.json["extra"]["pagination"] == {"count": 1, "total_count": 1}
    assert (await api.get("/api/v2/accounts", tenant.token)).status == 200
    r = await api.get(base(tenant), tenant.token)
    assert r.data["name"] == tenant.account.name
    assert (await api.get(base(tenant) + "/", tenant.token)).status == 200
    r = await api.get(base(other), tenant.token)
    assert r.status == 404 and r.json["status"]["is_success"] is False
    assert (await api.get("/api/v2/accounts/abc/", tenant.token)).status == 404


async def test_unknown_route_and_method_are_enveloped(api: Api, tenant) -> None:
    r = await api.get(base(tenant) + "/nothing-here/", tenant.token)
    assert r.status == 404 and r.json["status"]["code"] == 404
    r = await api.call("PATCH", base(tenant) + "/jobs/", tenant.token)
    assert r.status == 405 and r.json["status"]["code"] == 405


async def test_jobs_list_get_filters_and_pages(api: Api, tenant) -> None:
    extra = await Job.create(
        account_id=tenant.account.id, project=tenant.project, environment=tenant.environment,
        name="nightly", steps=["dbt run"], cron="0 3 * * *",
    )
    path = base(tenant) + "/jobs/"
    r = await api.get(path, tenant.token)
    assert [j["id"] for j in r.data] == [tenant.job.id, extra.id]
    assert r.json["extra"]["pagination"] == {"count": 2, "total_count": 2}
    assert r.json["extra"]["filters"]["account_id"] == tenant.account.id
    job = r.data[1]
    assert job["execute_steps"] == ["dbt run"] and job["triggers"]["schedule"] is True
    assert job["schedule"]["cron"] == "0 3 * * *" and job["state"] == 1
    r = await api.get(path, tenant.token, params={"order_by": "-id", "limit": "1", "offset": "1"})
    assert [j["id"] for j in r.data] == [tenant.job.id]
    assert r.json["extra"]["pagination"] == {"count": 1, "total_count": 2}
    r = await api.get(path, tenant.token, params={"environment_id": str(tenant.environment.id),
                                                  "project_id": str(tenant.project.id)})
    assert len(r.data) == 2
    r = await api.get(path, tenant.token, params={"project_id": "999999999"})
    assert r.data == [] and r.json["extra"]["pagination"]["total_count"] == 0
    for params, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"order_by": "password"}, "order_by"),
        ({"project_id": "x"}, "project_id"),
    ):
        r = await api.get(path, tenant.token, params=params)
        assert r.status == 400, params
        assert field in r.json["status"]["user_message"] and field in r.json["data"]
    r = await api.get(f"{base(tenant)}/jobs/{extra.id}", tenant.token,
                      params={"include_related": "environment"})
    assert r.data["id"] == extra.id and r.data["environment"]["id"] == tenant.environment.id
    assert (await api.get(f"{base(tenant)}/jobs/999999999/", tenant.token)).status == 404
    assert (await api.get(f"{base(tenant)}/jobs/99999999999999999999/", tenant.token)).status == 404


async def test_job_create_update_delete(api: Api, tenant) -> None:
    path = base(tenant) + "/jobs/"
    body = {
        "id": None,
        "account_id": tenant.account.id,
        "project_id": tenant.project.id,
        "environment_id": tenant.environment.id,
        "name": "Hourly",
        "dbt_version": None,
        "execute_steps": ["dbt seed", "dbt build --select tag:hourly"],
        "settings": {"threads": 8, "target_name": "prod"},
        "triggers": {"github_webhook": False, "schedule": True, "custom_branch_only": False},
        "schedule": {"cron": "0 * * * *", "date": {"type": "every_day"}},
        "generate_docs": True,
        "run_generate_sources": False,
        "state": 1,
    }
    r = await api.post(path, tenant.token, body=body)
    assert r.status == 200, r.json
    job = r.data
    assert job["name"] == "Hourly" and job["settings"] == {"threads": 8, "target_name": "prod"}
    assert job["triggers"]["schedule"] is True and job["schedule"]["cron"] == "0 * * * *"
    assert job["generate_docs"] is True and job["job_type"] == "scheduled"
    jid = job["id"]
    # the client posts back what it fetched, with changes
    job["name"] = "Hourly build"
    job["triggers"]["schedule"] = False
    r = await api.post(f"{path}{jid}/", tenant.token, body=job)
    assert r.status == 200, r.json
    assert r.data["name"] == "Hourly build" and r.data["triggers"]["schedule"] is False
    assert r.data["schedule"]["cron"] is None
    r = await api.post(f"{path}{jid}", tenant.token, body={
        "job_completion_trigger_condition": {
            "condition": {"job_id": tenant.job.id, "project_id": tenant.project.id,
                          "statuses": [10, 20]}
        }
    })
    assert r.data["job_completion_trigger_condition"]["condition"]["statuses"] == [10, 20]
    r = await api.delete(f"{path}{jid}/", tenant.token)
    assert r.status == 200 and r.data["state"] == 2
    assert (await api.get(f"{path}{jid}/", tenant.token)).status == 404
    assert (await api.delete(f"{path}{jid}/", tenant.token)).status == 404


async def test_job_input_errors_name_the_field(api: Api, tenant) -> None:
    path = base(tenant) + "/jobs/"
    good = {"environment_id": tenant.environment.id, "name": "x", "execute_steps": ["dbt run"]}
    cases = [
        ({**good, "environment_id": None}, "environment_id"),
        ({**good, "environment_id": 999999999}, "environment_id"),
        ({**good, "environment_id": "abc"}, "environment_id"),
        ({**good, "execute_steps": ["rm -rf /"]}, "execute_steps"),
        ({**good, "execute_steps": "dbt run"}, "execute_steps"),
        ({**good, "name": ""}, "name"),
        ({**good, "settings": {"threads": 0}}, "settings.threads"),
        ({**good, "triggers": {"schedule": True}, "schedule": {"cron": "61 * * * *"}},
         "schedule.cron"),
        ({**good, "triggers": {"schedule": True}}, "schedule.cron"),
        ({**good, "project_id": 999999999}, "project_id"),
        ({**good, "account_id": 999999999}, "account_id"),
        ({**good, "job_completion_trigger_condition": {"condition": {"job_id": 999999999,
                                                                     "statuses": [10]}}},
         "job_completion_trigger_condition"),
    ]
    for body, field in cases:
        r = await api.post(path, tenant.token, body=body)
        assert r.status == 400, (body, r.json)
        assert field in r.json["status"]["user_message"], (field, r.json)
    r = await api.post(path, tenant.token, raw=b"{not json")
    assert r.status == 400 and "JSON" in r.json["status"]["user_message"]
    r = await api.post(path, tenant.token, raw=b"[1, 2]")
    assert r.status == 400
    r = await api.post(f"{path}{tenant.job.id}/", tenant.token, body={"id": tenant.job.id + 1})
    assert r.status == 400 and "id" in r.json["data"]


async def test_roles(api: Api, platform: Platform) -> None:
    t = await make_tenant()
    viewer = await accounts.create_token(t.account, name="v", role="viewer")
    runner = await accounts.create_token(t.account, name="r", role="job_runner")
    path = base(t) + "/jobs/"
    assert (await api.get(path, viewer.secret)).status == 200
    body = {"environment_id": t.environment.id, "name": "x", "execute_steps": ["dbt run"]}
    r = await api.post(path, viewer.secret, body=body)
    assert r.status == 403 and r.json["status"]["code"] == 403
    assert (await api.post(f"{path}{t.job.id}/run/", viewer.secret)).status == 403
    assert (await api.delete(f"{path}{t.job.id}/", runner.secret)).status == 403
    assert (await api.post(f"{path}{t.job.id}/run/", runner.secret)).status == 200


async def test_trigger_run(api: Api, tenant) -> None:
    path = f"{base(tenant)}/jobs/{tenant.job.id}/run/"
    body = {
        "cause": "Triggered by Airflow",
        "git_branch": "feature/x",
        "git_sha": None,
        "schema_override": "dbt_ci",
        "threads_override": 2,
        "target_name_override": "ci",
        "steps_override": ["dbt run --select a", "dbt test"],
        "timeout_seconds_override": 600,
        "generate_docs_override": True,
        "azure_pull_request_id": None,
        "something_new": {"ignored": True},
    }
    r = await api.post(path, tenant.token, body=body)
    assert r.status == 200, r.json
    run = r.data
    assert run["status"] == 1 and run["status_humanized"] == "Queued"
    assert run["in_progress"] is True and run["is_complete"] is False
    assert run["job_definition_id"] == run["job_id"] == tenant.job.id
    assert run["trigger"]["cause"] == "Triggered by Airflow"
    assert run["trigger"]["steps_override"] == ["dbt run --select a", "dbt test"]
    assert run["trigger"]["threads_override"] == 2 and run["git_branch"] == "feature/x"
    assert run["href"].endswith(f"/runs/{run['id']}/")
    stored = await Run.get(id=run["id"])
    assert [s["command"] for s in stored.steps_spec] == [
        "dbt run --select a", "dbt test", "dbt docs generate"
    ]
    # no body at all, and the path without a trailing slash
    r = await api.post(path.rstrip("/"), tenant.token)
    assert r.status == 200 and r.data["trigger"]["cause"] == "Triggered via API"
    for bad, field in (
        ({"threads_override": 0}, "threads_override"),
        ({"threads_override": "many"}, "threads_override"),
        ({"steps_override": ["ls -la"]}, "steps_override"),
        ({"timeout_seconds_override": -1}, "timeout_seconds_override"),
        ({"git_sha": "not-hex!"}, "git_sha"),
        ({"generate_docs_override": "maybe"}, "generate_docs_override"),
        ({"cause": 12}, "cause"),
    ):
        r = await api.post(path, tenant.token, body=bad)
        assert r.status == 400, (bad, r.json)
        assert field in r.json["status"]["user_message"], (field, r.json)
    assert (await api.post(f"{base(tenant)}/jobs/999999999/run/", tenant.token)).status == 404


async def test_runs_list_filters_and_orders(api: Api, platform: Platform) -> None:
    t = await make_tenant()
    r1 = await finish_run(platform, await queued_run(t))
    r2 = await finish_run(platform, await queued_run(t), RunStatus.ERROR, message="boom")
    r3 = await queued_run(t)
    path = base(t) + "/runs/"
    r = await api.get(path, t.token)
    assert [x["id"] for x in r.data] == [r1.id, r2.id, r3.id]
    assert r.json["extra"]["pagination"] == {"count": 3, "total_count": 3}
    r = await api.get(path, t.token, params={"order_by": "-created_at", "limit": "2"})
    assert [x["id"] for x in r.data] == [r3.id, r2.id]
    assert r.json["extra"]["order_by"] == "-created_at"
    r = await api.get(path, t.token, params={"order_by": "-id", "offset": "2"})
    assert [x["id"] for x in r.data] == [r1.id]
    r = await api.get(path, t.token, params={"status": "20"})
    assert [x["id"] for x in r.data] == [r2.id] and r.data[0]["is_error"] is True
    assert r.data[0]["status_humanized"] == "Error" and r.data[0]["status_message"] == "boom"
    for form in ("[1,2,3]", "1,2,3", "[1, 10]"):
        r = await api.get(path, t.token, params={"status__in": form})
        want = {r3.id} if "10" not in form else {r1.id, r3.id}
        assert {x["id"] for x in r.data} == want, form
    r = await api.get(path, t.token, params=[("job_definition_id", str(t.job.id)),
                                             ("environment_id", str(t.environment.id)),
                                             ("project_id", str(t.project.id))])
    assert len(r.data) == 3
    r = await api.get(path, t.token, params={"job_definition_id": "999999999"})
    assert r.data == []
    done = next(x for x in (await api.get(path, t.token)).data if x["id"] == r1.id)
    assert done["status_humanized"] == "Success" and done["is_success"] is True
    assert done["finished_at"] and done["started_at"] and done["dequeued_at"]
    assert done["duration"].count(":") == 2 and done["run_duration_humanized"]
    for params, field in (
        ({"status__in": "[1,2,99]"}, "status__in"),
        ({"status__in": "[oops"}, "status__in"),
        ({"status": "7"}, "status"),
        ({"order_by": "-secret"}, "order_by"),
        ({"limit": "101"}, "limit"),
    ):
        r = await api.get(path, t.token, params=params)
        assert r.status == 400 and field in r.json["status"]["user_message"], params


async def test_run_include_related_forms(api: Api, platform: Platform) -> None:
    t = await make_tenant()
    run = await finish_run(platform, await queued_run(t, cause="nightly"))
    path = f"{base(t)}/runs/{run.id}/"
    plain = (await api.get(path, t.token)).data
    assert "trigger" not in plain and "run_steps" not in plain
    forms = [
        [("include_related", "trigger"), ("include_related", "job"),
         ("include_related", "environment"), ("include_related", "run_steps")],
        [("include_related", "trigger,job,environment,run_steps")],
        [("include_related", '["trigger","job","environment","run_steps"]')],
        [("include_related", "['trigger', 'job', 'environment', 'run_steps']")],
    ]
    for params in forms:
        r = await api.get(path, t.token, params=params)
        assert r.status == 200, params
        d = r.data
        assert d["trigger"]["cause"] == "nightly" and d["trigger"]["id"] == d["trigger_id"]
        assert d["job"]["id"] == t.job.id and d["environment"]["id"] == t.environment.id
        steps = d["run_steps"]
        assert [s["index"] for s in steps] == [1, 2]
        assert steps[1]["status_humanized"] == "Success"
        assert "Running with dbt=1.11" in steps[1]["logs"]
        assert "Cloned" not in steps[1]["logs"]
    r = await api.get(base(t) + "/runs/", t.token, params={"include_related": "['run_steps']"})
    assert r.data[0]["run_steps"][0]["name"] == "Clone"
    # names clients send for dbt Cloud features Kiln lacks are ignored
    r = await api.get(path, t.token, params={"include_related": "debug_logs,run_retries"})
    assert r.status == 200
    assert (await api.get(f"{base(t)}/runs/999999999/", t.token)).status == 404


async def test_cancel_retry_rerun(api: Api, platform: Platform) -> None:
    t = await make_tenant()
    queued = await queued_run(t)
    r = await api.post(f"{base(t)}/runs/{queued.id}/cancel/", t.token)
    assert r.status == 200 and r.data["status"] == 30 and r.data["is_cancelled"] is True
    assert r.data["status_humanized"] == "Cancelled"
    done = await finish_run(platform, await queued_run(t))
    r = await api.post(f"{base(t)}/runs/{done.id}/cancel", t.token)
    assert r.status == 409 and "Success" in r.json["status"]["user_message"]
    r = await api.post(f"{base(t)}/runs/{done.id}/retry/", t.token)
    assert r.status == 409
    failed = await finish_run(platform, await queued_run(t), RunStatus.ERROR, message="x")
    r = await api.post(f"{base(t)}/runs/{failed.id}/retry/", t.token)
    assert r.status == 200 and r.data["status"] == 1 and r.data["id"] != failed.id
    retried = await Run.get(id=r.data["id"])
    assert retried.previous_run_id == failed.id  # type: ignore[attr-defined]
    assert retried.steps_spec[0]["command"] == "dbt retry"
    # rerun: the job's latest run is the retry, still queued → conflict; once it fails, a rerun
    r = await api.post(f"{base(t)}/jobs/{t.job.id}/rerun/", t.token)
    assert r.status == 409
    await finish_run(platform, retried, RunStatus.ERROR, message="again")
    r = await api.post(f"{base(t)}/jobs/{t.job.id}/rerun", t.token)
    assert r.status == 200 and r.data["trigger"]["job_definition_id"] == t.job.id
    assert (await Run.get(id=r.data["id"])).previous_run_id == retried.id  # type: ignore[attr-defined]
    fresh = await make_tenant()
    r = await api.post(f"{base(fresh)}/jobs/{fresh.job.id}/rerun/", fresh.token)
    assert r.status == 404
    assert (await api.post(f"{base(t)}/runs/999999999/cancel/", t.token)).status == 404


async def test_artifacts(api: Api, platform: Platform) -> None:
    t = await make_tenant()
    old = await finish_run(platform, await queued_run(t),
                           files={"manifest.json": b'{"old": true}'})
    run = await finish_run(
        platform, await queued_run(t),
        files={"manifest.json": MANIFEST, "run_results.json": b'{"results": []}',
               "compiled/shop/models/a.sql": b"select 1"},
    )
    await finish_run(platform, await queued_run(t), RunStatus.ERROR,
                     files={"manifest.json": b"{}"})
    r = await api.get(f"{base(t)}/runs/{run.id}/artifacts/", t.token)
    assert r.data == ["compiled/shop/models/a.sql", "manifest.json", "run_results.json"]
    r = await api.get(f"{base(t)}/runs/{run.id}/artifacts", t.token, params={"step": "1"})
    assert r.data == []
    r = await api.get(f"{base(t)}/runs/{run.id}/artifacts/manifest.json", t.token)
    assert r.status == 200 and r.body == MANIFEST
    assert r.headers["Content-Type"].startswith("application/json")
    r = await api.get(f"{base(t)}/runs/{run.id}/artifacts/compiled/shop/models/a.sql", t.token,
                      params={"step": "2"})
    assert r.body == b"select 1"
    r = await api.get(f"{base(t)}/runs/{run.id}/artifacts/catalog.json", t.token)
    assert r.status == 404 and r.json["status"]["code"] == 404
    r = await api.get(f"{base(t)}/runs/{run.id}/artifacts/manifest.json", t.token,
                      params={"step": "x"})
    assert r.status == 400
    # the job's latest *successful* run, not the later failed one nor the older one
    r = await api.get(f"{base(t)}/jobs/{t.job.id}/artifacts/manifest.json", t.token)
    assert r.status == 200 and r.body == MANIFEST and old.id < run.id
    fresh = await make_tenant()
    r = await api.get(f"{base(fresh)}/jobs/{fresh.job.id}/artifacts/manifest.json", fresh.token)
    assert r.status == 404


async def test_other_accounts_objects_are_404(api: Api, platform: Platform) -> None:
    a, b = await make_tenant(), await make_tenant()
    run_b = await finish_run(platform, await queued_run(b), files={"manifest.json": MANIFEST})
    checks = [
        ("GET", f"{base(b)}/jobs/"),
        ("GET", f"{base(a)}/jobs/{b.job.id}/"),
        ("POST", f"{base(a)}/jobs/{b.job.id}/"),
        ("DELETE", f"{base(a)}/jobs/{b.job.id}/"),
        ("POST", f"{base(a)}/jobs/{b.job.id}/run/"),
        ("POST", f"{base(a)}/jobs/{b.job.id}/rerun/"),
        ("GET", f"{base(a)}/jobs/{b.job.id}/artifacts/manifest.json"),
        ("GET", f"{base(a)}/runs/{run_b.id}/"),
        ("POST", f"{base(a)}/runs/{run_b.id}/cancel/"),
        ("POST", f"{base(a)}/runs/{run_b.id}/retry/"),
        ("GET", f"{base(a)}/runs/{run_b.id}/artifacts/"),
        ("GET", f"{base(a)}/runs/{run_b.id}/artifacts/manifest.json"),
        ("GET", f"{base(b)}/runs/{run_b.id}/"),
    ]
    for method, path in checks:
        r = await api.call(method, path, a.token, body={})
        assert r.status == 404, (method, path, r.status)
        assert r.json["status"]["is_success"] is False
    r = await api.get(f"{base(a)}/runs/", a.token, params={"job_definition_id": str(b.job.id)})
    assert r.data == []
    r = await api.post(f"{base(a)}/jobs/", a.token, body={
        "environment_id": b.environment.id, "name": "steal", "execute_steps": ["dbt run"]})
    assert r.status == 400 and "environment_id" in r.json["data"]


async def test_rate_limit(platform: Platform) -> None:
    limited = dataclasses.replace(
        platform, settings=platform.settings.with_overrides(rate_limit_per_minute=5), services={}
    )
    gw, runner = await start_gateway(limited)
    try:
        t, other = await make_tenant(), await make_tenant()
        async with aiohttp.ClientSession() as session:
            api = Api(gw.url, session)
            codes = [(await api.get(base(t) + "/jobs/", t.token)).status for _ in range(7)]
            assert codes == [200] * 5 + [429] * 2
            r = await api.get(base(t) + "/runs/", t.token)
            assert r.status == 429 and r.json["status"]["code"] == 429
            assert int(r.headers["Retry-After"]) >= 1
            # the limit is per token
            assert (await api.get(base(other) + "/jobs/", other.token)).status == 200
    finally:
        await runner.cleanup()
