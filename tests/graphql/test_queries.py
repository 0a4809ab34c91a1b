"""Read paths: every query field and the relations between types."""

from __future__ import annotations

from server.models import Artifact, Credentials, Environment, EnvVar, IdeSession, Job
from server.services import env_vars
from tests.graphql.conftest import add_runs, gid

RUN_FIELDS = """
  id databaseId status statusCode statusHumanized statusMessage isFinal cause triggerKind
  gitBranch gitSha attempt timeoutSeconds overrides scheduledFor createdAt updatedAt
  dequeuedAt startedAt finishedAt cancelRequested durationSeconds queuedSeconds artifactsSaved
  job { id name } environment { id name } project { id name } triggeredBy { email }
  previousRun { id } steps { id index name kind command status statusCode durationSeconds
  run { id } } artifacts { id path size sha256 stepIndex run { id } }
"""


async def test_run_by_id_with_every_field(api, tenant, platform) -> None:
    (run,) = await add_runs(tenant, 1)
    await Artifact.create(
        account_id=tenant.account.id,
        run_id=run.id,
        step_index=2,
        path="manifest.json",
        size=1234,
        sha256="ab" * 32,
        object_key="k",
    )
    data = await api.data(
        f"query($id: ID!) {{ run(id: $id) {{ {RUN_FIELDS} }} }}",
        {"id": gid("Run", run.id)},
        token=tenant.token,
    )
    r = data["run"]
    assert r["id"] == gid("Run", run.id) and r["databaseId"] == run.id
    assert (r["status"], r["statusCode"], r["statusHumanized"]) == ("success", 10, "Success")
    assert r["isFinal"] and r["cause"] == "test" and r["scheduledFor"] is None
    assert r["job"]["name"] == "build" and r["environment"]["name"] == "Production"
    assert r["project"]["name"] == "shop" and r["triggeredBy"] is None
    assert [s["index"] for s in r["steps"]] == [1, 2, 3]
    assert r["steps"][0]["status"] == "success" and r["steps"][0]["run"]["id"] == r["id"]
    assert r["artifacts"] == [
        {
            "id": r["artifacts"][0]["id"],
            "path": "manifest.json",
            "size": 1234,
            "sha256": "ab" * 32,
            "stepIndex": 2,
            "run": {"id": r["id"]},
        }
    ]
    assert r["overrides"] == {}


async def test_run_missing_is_null(api, tenant) -> None:
    data = await api.data(
        "query($id: ID!) { run(id: $id) { id } }", {"id": gid("Run", 10**12)}, token=tenant.token
    )
    assert data == {"run": None}


async def test_runs_filters(api, tenant, platform) -> None:
    await add_runs(tenant, 2)
    await add_runs(tenant, 1, status=20)
    other_job = await Job.create(
        account_id=tenant.account.id,
        project_id=tenant.project.id,
        environment_id=tenant.environment.id,
        name="other",
        steps=["dbt run"],
    )
    q = (
        "query($f: RunFilter) { runs(filter: $f) { totalCount"
        " edges { node { status job { name } } } } }"
    )

    async def count(f: dict) -> int:
        return (await api.data(q, {"f": f}, token=tenant.token))["runs"]["totalCount"]

    assert await count({}) == 3
    assert await count({"status": "error"}) == 1
    assert await count({"status": ["error", "success"]}) == 3
    assert await count({"jobId": gid("Job", tenant.job.id)}) == 3
    assert await count({"jobId": gid("Job", other_job.id)}) == 0
    assert await count({"environmentId": gid("Environment", tenant.environment.id)}) == 3
    assert await count({"projectId": gid("Project", tenant.project.id)}) == 3
    assert await count({"createdAfter": "2000-01-01T00:00:00Z"}) == 3
    assert await count({"createdBefore": "2000-01-01T00:00:00Z"}) == 0


async def test_jobs_environments_projects(api, tenant) -> None:
    data = await api.data(
        """{
          projects { totalCount edges { node { name bundledPath defaultBranch
            environments { name kind targetName threads connection { name adapterType details }
              credentials { adapterType fields secretFields } jobs { name } }
            jobs { name } } } }
          environments(filter: {kind: deployment}) { edges { node { name project { name } } } }
          jobs(filter: {name: "build"}) { edges { node { name steps generateDocs runFreshness
            timeoutSeconds threads targetName schedule { cron timezone nextTickAt }
            completionTrigger { job { name } } lastRun { id } environment { name } } } }
        }""",
        token=tenant.token,
    )
    (project,) = [e["node"] for e in data["projects"]["edges"]]
    assert project["name"] == "shop" and project["bundledPath"] == "/nonexistent"
    (env,) = project["environments"]
    assert env["kind"] == "deployment" and env["targetName"] == "prod"
    assert env["connection"]["adapterType"] == "duckdb" and "path" in env["connection"]["details"]
    assert env["credentials"] == {
        "adapterType": "duckdb",
        "fields": {"schema": "main"},
        "secretFields": [],
    }
    assert env["jobs"] == [{"name": "build"}] and project["jobs"] == [{"name": "build"}]
    (job,) = [e["node"] for e in data["jobs"]["edges"]]
    assert job["steps"] == ["dbt build"] and job["schedule"]["cron"] is None
    assert job["completionTrigger"] is None and job["lastRun"] is None


async def test_job_runs_and_last_run(api, tenant) -> None:
    runs = await add_runs(tenant, 3)
    data = await api.data(
        "query($id: ID!) { job(id: $id) { lastRun { id } runs(first: 2) { totalCount"
        " pageInfo { hasNextPage } edges { node { id } } } } }",
        {"id": gid("Job", tenant.job.id)},
        token=tenant.token,
    )
    job = data["job"]
    assert job["lastRun"]["id"] == gid("Run", runs[-1].id)
    assert job["runs"]["totalCount"] == 3 and job["runs"]["pageInfo"]["hasNextPage"]
    assert [e["node"]["id"] for e in job["runs"]["edges"]] == [
        gid("Run", runs[2].id),
        gid("Run", runs[1].id),
    ]


async def test_completion_trigger_and_schedule(api, tenant) -> None:
    downstream = await Job.create(
        account_id=tenant.account.id,
        project_id=tenant.project.id,
        environment_id=tenant.environment.id,
        name="after",
        steps=["dbt test"],
        trigger_job_id=tenant.job.id,
        trigger_statuses=[10, 20],
        cron="0 * * * *",
        timezone="Europe/Paris",
    )
    data = await api.data(
        "query($id: ID!) { job(id: $id) { schedule { cron timezone }"
        " completionTrigger { statuses job { name } } } }",
        {"id": gid("Job", downstream.id)},
        token=tenant.token,
    )
    assert data["job"] == {
        "schedule": {"cron": "0 * * * *", "timezone": "Europe/Paris"},
        "completionTrigger": {"statuses": ["success", "error"], "job": {"name": "build"}},
    }


async def test_secrets_are_never_readable(api, tenant, platform) -> None:
    creds = await Credentials.get(id=tenant.environment.credentials_id)
    from server.services import credentials as cs

    await cs.update_credentials(
        tenant.actor(), platform.vault, creds.id, {"secrets": {"password": "hunter2"}}
    )
    await env_vars.set_env_var(
        tenant.actor(), platform.vault, tenant.project.id, "DBT_ENV_SECRET_TOKEN", "s3cr3t-value"
    )
    await env_vars.set_env_var(
        tenant.actor(), platform.vault, tenant.project.id, "DBT_TARGET_SCHEMA", "analytics"
    )
    body = await api.call(
        """{ credentials { edges { node { secretFields fields } } }
             projects { edges { node { envVars { name value isSecret scope } } } } }""",
        token=tenant.token,
    )
    text = str(body)
    assert "hunter2" not in text and "s3cr3t-value" not in text
    (node,) = [e["node"] for e in body["data"]["credentials"]["edges"]]
    assert node["secretFields"] == ["password"]
    (proj,) = body["data"]["projects"]["edges"]
    by_name = {v["name"]: v for v in proj["node"]["envVars"]}
    assert by_name["DBT_ENV_SECRET_TOKEN"] == {
        "name": "DBT_ENV_SECRET_TOKEN",
        "value": None,
        "isSecret": True,
        "scope": "project",
    }
    assert by_name["DBT_TARGET_SCHEMA"]["value"] == "analytics"
    stored = await EnvVar.get(name="DBT_ENV_SECRET_TOKEN", account_id=tenant.account.id)
    assert stored.value != "s3cr3t-value"  # encrypted at rest
    assert platform.vault.decrypt(stored.value) == "s3cr3t-value"


async def test_node_and_nodes_for_every_type(api, tenant, platform) -> None:
    (run,) = await add_runs(tenant, 1, steps=1)
    step = (await run.steps.all())[0]
    art = await Artifact.create(
        account_id=tenant.account.id,
        run_id=run.id,
        step_index=1,
        path="run_results.json",
        size=1,
        sha256="0" * 64,
        object_key="k",
    )
    ide = await IdeSession.create(
        account_id=tenant.account.id, user_id=tenant.user.id, project_id=tenant.project.id
    )
    var = await env_vars.set_env_var(
        tenant.actor(), platform.vault, tenant.project.id, "DBT_X", "1"
    )
    from server.models import Membership, Token

    membership = await Membership.get(account_id=tenant.account.id, user_id=tenant.user.id)
    token = await Token.filter(account_id=tenant.account.id).first()
    env = await Environment.get(id=tenant.environment.id)
    ids = {
        "Account": tenant.account.id,
        "User": tenant.user.id,
        "Membership": membership.id,
        "Token": token.id,
        "Project": tenant.project.id,
        "Connection": env.connection_id,
        "Credentials": env.credentials_id,
        "Environment": env.id,
        "EnvVar": var.id,
        "Job": tenant.job.id,
        "Run": run.id,
        "RunStep": step.id,
        "Artifact": art.id,
        "IdeSession": ide.id,
    }
    gids = [gid(t, pk) for t, pk in ids.items()]
    data = await api.data(
        "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id ... on Run { job { name } } } }",
        {"ids": gids},
        token=tenant.token,
    )
    assert [n["__typename"] for n in data["nodes"]] == list(ids)
    assert [n["id"] for n in data["nodes"]] == gids
    assert data["nodes"][10]["job"] == {"name": "build"}
    for g in gids:
        one = await api.data(
            "query($id: ID!) { node(id: $id) { id } }", {"id": g}, token=tenant.token
        )
        assert one["node"]["id"] == g
    # a well-formed id of a type that is not a Node here is simply not found
    assert (await api.data('{ node(id: "V2ViaG9vazox") { id } }', token=tenant.token)) == {
        "node": None
    }


async def test_viewer_token_and_account(api, tenant) -> None:
    data = await api.data(
        "{ viewer { user { email } token { name role kind } account { name } role permissions"
        " accounts { role account { name } } } account { name runSlots } version }",
        token=tenant.token,
    )
    v = data["viewer"]
    assert v["user"] is None and v["token"] == {"name": "t", "role": "owner", "kind": "service"}
    assert v["account"]["name"] == tenant.account.name and v["role"] == "owner"
    assert "manage_members" in v["permissions"]
    assert v["accounts"] == [{"role": "owner", "account": {"name": tenant.account.name}}]
    assert data["account"] == {"name": tenant.account.name, "runSlots": 5}


async def test_tokens_and_memberships_lists(api, tenant) -> None:
    data = await api.data(
        "{ tokens { edges { node { name kind role prefix isActive user { email } } } }"
        " memberships { edges { node { role user { email } account { name } } } } }",
        token=tenant.token,
    )
    (tok,) = [e["node"] for e in data["tokens"]["edges"]]
    assert tok["prefix"].startswith("kiln_") and tok["isActive"] and tok["user"] is None
    (m,) = [e["node"] for e in data["memberships"]["edges"]]
    assert m == {
        "role": "owner",
        "user": {"email": tenant.user.email},
        "account": {"name": tenant.account.name},
    }


async def test_connections_query(api, tenant) -> None:
    env = await Environment.get(id=tenant.environment.id)
    data = await api.data(
        'query($id: ID!) { connections(filter: {adapterType: "duckdb"}) { totalCount }'
        " connection(id: $id) { name adapterType } }",
        {"id": gid("Connection", env.connection_id)},
        token=tenant.token,
    )
    assert data == {
        "connections": {"totalCount": 1},
        "connection": {"name": "wh", "adapterType": "duckdb"},
    }


async def test_graphiql_page(api) -> None:
    resp = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert resp.status == 200 and "graphiql" in (await resp.text()).lower()


async def test_get_query(api, tenant) -> None:
    resp = await api.client.get(
        "/graphql",
        params={"query": "{ account { name } }"},
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert resp.status == 200
    assert (await resp.json())["data"]["account"]["name"] == tenant.account.name
