"""Every mutation: the happy path, its error payloads, and the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.models import AuditEvent, Credentials, Job, Membership, Run, RunStatus, Token
from tests.graphql.conftest import add_runs, gid

ERR = "errors { code message field }"


async def audit_actions(t) -> list[str]:
    return [e.action for e in await AuditEvent.filter(account_id=t.account.id).order_by("id")]


async def test_project_lifecycle(api, tenant) -> None:
    p = await api.mutate(
        f"""mutation {{ createProject(input: {{name: "web", repositoryUrl:
        "https://github.com/acme/web.git", subdirectory: "dbt/", defaultBranch: "develop"}})
        {{ project {{ id name repositoryUrl subdirectory defaultBranch }} {ERR} }} }}""",
        token=tenant.token,
    )
    assert p["errors"] == [] and p["project"]["subdirectory"] == "dbt"
    pid = p["project"]["id"]
    dup = await api.mutate(
        f'mutation {{ createProject(input: {{name: "web", repositoryUrl: "git@x.io:a/b.git"}})'
        f" {{ project {{ id }} {ERR} }} }}",
        token=tenant.token,
    )
    assert dup["project"] is None and dup["errors"][0]["code"] == "conflict"
    assert dup["errors"][0]["field"] == "name"
    bad = await api.mutate(
        f'mutation {{ createProject(input: {{name: "x", repositoryUrl: "not a url"}})'
        f" {{ project {{ id }} {ERR} }} }}",
        token=tenant.token,
    )
    assert bad["errors"][0] == {
        "code": "invalid",
        "field": "repositoryUrl",
        "message": bad["errors"][0]["message"],
    }
    up = await api.mutate(
        f'mutation($id: ID!) {{ updateProject(id: $id, input: {{description: "hello"}})'
        f" {{ project {{ description name }} {ERR} }} }}",
        {"id": pid},
        token=tenant.token,
    )
    assert up["project"] == {"description": "hello", "name": "web"}
    gone = await api.mutate(
        f"mutation($id: ID!) {{ deleteProject(id: $id) {{ deletedId {ERR} }} }}",
        {"id": pid},
        token=tenant.token,
    )
    assert gone == {"deletedId": pid, "errors": []}
    again = await api.mutate(
        f"mutation($id: ID!) {{ deleteProject(id: $id) {{ deletedId {ERR} }} }}",
        {"id": pid},
        token=tenant.token,
    )
    assert again["errors"][0]["code"] == "not_found"
    # the name is free again
    p2 = await api.mutate(
        f'mutation {{ createProject(input: {{name: "web", repositoryUrl: "ssh://g/x.git"}})'
        f" {{ project {{ id }} {ERR} }} }}",
        token=tenant.token,
    )
    assert p2["errors"] == []
    assert (await audit_actions(tenant))[:3] == [
        "project.create",
        "project.update",
        "project.delete",
    ]


async def test_connection_and_credentials(api, tenant, platform) -> None:
    c = await api.mutate(
        f"""mutation {{ createConnection(input: {{name: "pg", adapterType: "postgres",
        details: {{host: "db", port: 5432}}}}) {{ connection {{ id details }} {ERR} }} }}""",
        token=tenant.token,
    )
    assert c["connection"]["details"] == {"host": "db", "port": 5432}
    secret_in_details = await api.mutate(
        f"""mutation {{ createConnection(input: {{name: "pg2", adapterType: "postgres",
        details: {{password: "x"}}}}) {{ connection {{ id }} {ERR} }} }}""",
        token=tenant.token,
    )
    assert secret_in_details["errors"][0]["code"] == "invalid"
    cr = await api.mutate(
        f"""mutation($p: ID!) {{ createCredentials(input: {{projectId: $p, adapterType: "postgres",
        name: "prod", fields: {{user: "kiln", schema: "analytics"}},
        secrets: {{password: "pw-1", private_key: "k"}}}})
        {{ credentials {{ id secretFields fields user {{ email }} }} {ERR} }} }}""",
        {"p": gid("Project", tenant.project.id)},
        token=tenant.token,
    )
    assert cr["credentials"]["secretFields"] == ["password", "private_key"]
    assert "pw-1" not in str(cr)
    cid = cr["credentials"]["id"]
    up = await api.mutate(
        f"""mutation($id: ID!) {{ updateCredentials(id: $id, input: {{
        secrets: {{password: "pw-2", private_key: null}}}})
        {{ credentials {{ secretFields }} {ERR} }} }}""",
        {"id": cid},
        token=tenant.token,
    )
    assert up["credentials"]["secretFields"] == ["password"]
    stored = await Credentials.get(account_id=tenant.account.id, name="prod")
    assert "pw-2" not in stored.secrets and "pw-2" in platform.vault.decrypt(stored.secrets)
    env = await api.mutate(
        f"""mutation($p: ID!, $c: ID!, $k: ID!) {{ createEnvironment(input: {{projectId: $p,
        name: "Staging", deploymentType: "staging", connectionId: $c, credentialsId: $k,
        threads: 8, dbtVersion: "1.11", customBranch: "release/1"}})
        {{ environment {{ id threads customBranch connection {{ name }} credentials {{ name }} }}
        {ERR} }} }}""",
        {"p": gid("Project", tenant.project.id), "c": c["connection"]["id"], "k": cid},
        token=tenant.token,
    )
    assert env["errors"] == [] and env["environment"]["connection"] == {"name": "pg"}
    in_use = await api.mutate(
        f"mutation($id: ID!) {{ deleteConnection(id: $id) {{ deletedId {ERR} }} }}",
        {"id": c["connection"]["id"]},
        token=tenant.token,
    )
    assert in_use["errors"][0]["code"] == "conflict"
    await api.mutate(
        f"mutation($id: ID!) {{ deleteEnvironment(id: $id) {{ deletedId {ERR} }} }}",
        {"id": env["environment"]["id"]},
        token=tenant.token,
    )
    for m, i in (("deleteCredentials", cid), ("deleteConnection", c["connection"]["id"])):
        res = await api.mutate(
            f"mutation($id: ID!) {{ {m}(id: $id) {{ deletedId {ERR} }} }}",
            {"id": i},
            token=tenant.token,
        )
        assert res["errors"] == [], res
    actions = await audit_actions(tenant)
    assert "credentials.update" in actions and "connection.delete" in actions
    events = await AuditEvent.filter(account_id=tenant.account.id)
    assert "pw-" not in str([e.details for e in events])


async def test_environment_rules(api, tenant) -> None:
    p = gid("Project", tenant.project.id)
    dev = await api.mutate(
        f'mutation($p: ID!) {{ createEnvironment(input: {{projectId: $p, name: "Dev",'
        f" kind: development}}) {{ environment {{ kind deploymentType }} {ERR} }} }}",
        {"p": p},
        token=tenant.token,
    )
    assert dev["environment"] == {"kind": "development", "deploymentType": None}
    dev2 = await api.mutate(
        f'mutation($p: ID!) {{ createEnvironment(input: {{projectId: $p, name: "Dev2",'
        f" kind: development}}) {{ environment {{ kind }} {ERR} }} }}",
        {"p": p},
        token=tenant.token,
    )
    assert dev2["errors"][0]["code"] == "conflict"
    bad = await api.mutate(
        f'mutation($p: ID!) {{ createEnvironment(input: {{projectId: $p, name: "X",'
        f' threads: 0, dbtVersion: "banana"}}) {{ environment {{ kind }} {ERR} }} }}',
        {"p": p},
        token=tenant.token,
    )
    assert bad["errors"][0]["field"] in ("threads", "dbtVersion")


async def test_job_lifecycle_and_schedule(api, tenant) -> None:
    env = gid("Environment", tenant.environment.id)
    j = await api.mutate(
        f"""mutation($e: ID!) {{ createJob(input: {{environmentId: $e, name: "nightly",
        steps: ["dbt seed", "dbt build --select tag:nightly"], generateDocs: true,
        timeoutSeconds: 600, threads: 8, schedule: {{cron: "0 3 * * *", timezone: "Europe/Paris"}}
        }}) {{ job {{ id steps generateDocs timeoutSeconds threads schedule {{ cron timezone }}
        project {{ name }} }} {ERR} }} }}""",
        {"e": env},
        token=tenant.token,
    )
    assert j["errors"] == [] and j["job"]["schedule"] == {
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
    }
    jid = j["job"]["id"]
    row = await Job.get(account_id=tenant.account.id, name="nightly")
    first_epoch = row.schedule_epoch
    assert first_epoch is not None and row.next_tick_at is None
    await Job.filter(id=row.id).update(next_tick_at=datetime.now(UTC) + timedelta(hours=1))
    for bad_input, field in (
        ('{steps: ["rm -rf /"]}', "steps"),
        ('{steps: ["dbt build --profiles-dir /etc"]}', "steps"),
        ('{schedule: {cron: "61 * * * *"}}', "schedule.cron"),
        ('{schedule: {cron: "0 * * * *", timezone: "Mars/Olympus"}}', "schedule.timezone"),
        ("{timeoutSeconds: -1}", "timeoutSeconds"),
        ("{threads: 1000}", "threads"),
        ('{name: ""}', "name"),
    ):
        res = await api.mutate(
            f"mutation($id: ID!) {{ updateJob(id: $id, input: {bad_input}) {{ job {{ id }} {ERR}"
            " } }",
            {"id": jid},
            token=tenant.token,
        )
        assert res["job"] is None and res["errors"][0]["code"] == "invalid", bad_input
        assert res["errors"][0]["field"] == field, (bad_input, res)
    up = await api.mutate(
        f"""mutation($id: ID!) {{ updateJob(id: $id, input: {{schedule: {{cron: "*/15 * * * *"}}}})
        {{ job {{ schedule {{ cron timezone nextTickAt }} }} {ERR} }} }}""",
        {"id": jid},
        token=tenant.token,
    )
    assert up["job"]["schedule"] == {"cron": "*/15 * * * *", "timezone": "UTC", "nextTickAt": None}
    row = await Job.get(id=row.id)
    assert row.schedule_epoch > first_epoch and row.next_tick_at is None
    off = await api.mutate(
        f"mutation($id: ID!) {{ updateJob(id: $id, input: {{schedule: {{cron: null}}}})"
        f" {{ job {{ schedule {{ cron }} }} {ERR} }} }}",
        {"id": jid},
        token=tenant.token,
    )
    assert off["job"]["schedule"]["cron"] is None
    # job-completion trigger: set, refuse a loop, remove
    trig = await api.mutate(
        f"""mutation($id: ID!, $up: ID!) {{ updateJob(id: $id, input: {{completionTrigger:
        {{jobId: $up, statuses: [success]}}}}) {{ job {{ completionTrigger {{ job {{ name }}
        statuses }} }} {ERR} }} }}""",
        {"id": jid, "up": gid("Job", tenant.job.id)},
        token=tenant.token,
    )
    assert trig["job"]["completionTrigger"] == {"job": {"name": "build"}, "statuses": ["success"]}
    loop = await api.mutate(
        f"""mutation($id: ID!, $up: ID!) {{ updateJob(id: $id, input: {{completionTrigger:
        {{jobId: $up, statuses: [error]}}}}) {{ job {{ id }} {ERR} }} }}""",
        {"id": gid("Job", tenant.job.id), "up": jid},
        token=tenant.token,
    )
    assert loop["errors"][0]["field"] == "completionTrigger.jobId"
    dev_env = await api.mutate(
        f'mutation($p: ID!) {{ createEnvironment(input: {{projectId: $p, name: "D",'
        f" kind: development}}) {{ environment {{ id }} {ERR} }} }}",
        {"p": gid("Project", tenant.project.id)},
        token=tenant.token,
    )
    in_dev = await api.mutate(
        f'mutation($e: ID!) {{ createJob(input: {{environmentId: $e, name: "x",'
        f' steps: ["dbt run"]}}) {{ job {{ id }} {ERR} }} }}',
        {"e": dev_env["environment"]["id"]},
        token=tenant.token,
    )
    assert in_dev["errors"][0]["field"] == "environmentId"
    gone = await api.mutate(
        f"mutation($id: ID!) {{ deleteJob(id: $id) {{ deletedId {ERR} }} }}",
        {"id": jid},
        token=tenant.token,
    )
    assert gone["errors"] == []
    assert "job.delete" in await audit_actions(tenant)


async def test_trigger_cancel_retry(api, tenant, platform) -> None:
    job = gid("Job", tenant.job.id)
    t = await api.mutate(
        f"""mutation($j: ID!) {{ triggerJobRun(jobId: $j, cause: "deploy",
        overrides: {{threads: 2, gitBranch: "feature/x", steps: ["dbt run -s a"]}})
        {{ run {{ id status statusCode cause gitBranch overrides triggerKind }} {ERR} }} }}""",
        {"j": job},
        token=tenant.token,
    )
    run = t["run"]
    assert (run["status"], run["statusCode"], run["cause"]) == ("queued", 1, "deploy")
    assert run["gitBranch"] == "feature/x" and run["overrides"]["threads"] == 2
    assert run["triggerKind"] == "api"
    bad = await api.mutate(
        f"""mutation($j: ID!) {{ triggerJobRun(jobId: $j, overrides: {{threads: 0}})
        {{ run {{ id }} {ERR} }} }}""",
        {"j": job},
        token=tenant.token,
    )
    assert bad["errors"][0]["field"] == "overrides.threads"
    c = await api.mutate(
        f"""mutation($id: ID!) {{ cancelRun(id: $id, reason: "nope")
        {{ run {{ status statusMessage finishedAt }} {ERR} }} }}""",
        {"id": run["id"]},
        token=tenant.token,
    )
    assert c["run"]["status"] == "cancelled" and c["run"]["finishedAt"]
    not_failed = await api.mutate(
        f"mutation($id: ID!) {{ retryRun(id: $id) {{ run {{ id }} {ERR} }} }}",
        {"id": run["id"]},
        token=tenant.token,
    )
    assert not_failed["errors"][0]["code"] == "conflict"
    (failed,) = await add_runs(tenant, 1, status=RunStatus.ERROR)
    r = await api.mutate(
        f"""mutation($id: ID!) {{ retryRun(id: $id) {{ run {{ id attempt triggerKind
        previousRun {{ id }} }} {ERR} }} }}""",
        {"id": gid("Run", failed.id)},
        token=tenant.token,
    )
    assert r["run"]["attempt"] == 2 and r["run"]["previousRun"]["id"] == gid("Run", failed.id)
    missing = await api.mutate(
        f"mutation($id: ID!) {{ cancelRun(id: $id) {{ run {{ id }} {ERR} }} }}",
        {"id": gid("Run", 10**12)},
        token=tenant.token,
    )
    assert missing["errors"][0]["code"] == "not_found"
    assert {"run.trigger", "run.cancel", "run.retry"} <= set(await audit_actions(tenant))
    assert await Run.filter(account_id=tenant.account.id).count() == 3


async def test_env_vars(api, tenant) -> None:
    p = gid("Project", tenant.project.id)
    q = f"""mutation($p: ID!, $n: String!, $v: String!, $j: ID) {{ setEnvVar(input: {{
        projectId: $p, name: $n, value: $v, jobId: $j}})
        {{ envVar {{ id name value isSecret scope }} {ERR} }} }}"""
    a = await api.mutate(q, {"p": p, "n": "DBT_SCHEMA", "v": "a"}, token=tenant.token)
    b = await api.mutate(q, {"p": p, "n": "DBT_SCHEMA", "v": "b"}, token=tenant.token)
    assert a["envVar"]["id"] == b["envVar"]["id"] and b["envVar"]["value"] == "b"
    job_scope = await api.mutate(
        q, {"p": p, "n": "DBT_SCHEMA", "v": "c", "j": gid("Job", tenant.job.id)}, token=tenant.token
    )
    assert job_scope["envVar"]["scope"] == "job"
    secret = await api.mutate(
        q, {"p": p, "n": "DBT_ENV_SECRET_KEY", "v": "zzz"}, token=tenant.token
    )
    assert secret["envVar"]["value"] is None and secret["envVar"]["isSecret"]
    bad = await api.mutate(q, {"p": p, "n": "PATH", "v": "x"}, token=tenant.token)
    assert bad["errors"][0]["field"] == "name"
    d = await api.mutate(
        f"mutation($id: ID!) {{ deleteEnvVar(id: $id) {{ deletedId {ERR} }} }}",
        {"id": a["envVar"]["id"]},
        token=tenant.token,
    )
    assert d["errors"] == []


async def test_tokens(api, tenant) -> None:
    t = await api.mutate(
        f"""mutation {{ createToken(input: {{name: "ci", role: job_runner}})
        {{ secret token {{ id name role kind prefix isActive }} {ERR} }} }}""",
        token=tenant.token,
    )
    assert t["secret"].startswith("kiln_") and t["token"]["prefix"] == t["secret"][:10]
    assert t["token"]["role"] == "job_runner" and t["token"]["kind"] == "service"
    stored = await Token.get(name="ci", account_id=tenant.account.id)
    assert t["secret"] not in (stored.token_hash, stored.prefix)
    who = await api.data("{ viewer { role } }", token=t["secret"])
    assert who["viewer"]["role"] == "job_runner"
    past = await api.mutate(
        f"""mutation {{ createToken(input: {{name: "old", role: viewer,
        expiresAt: "2001-01-01T00:00:00Z"}}) {{ secret {ERR} }} }}""",
        token=tenant.token,
    )
    assert past["errors"][0]["field"] == "expiresAt" and past["secret"] is None
    personal = await api.mutate(
        f"""mutation {{ createToken(input: {{name: "me", role: viewer, personal: true}})
        {{ secret {ERR} }} }}""",
        token=tenant.token,
    )
    assert personal["errors"][0]["field"] == "personal"  # a service token has no user
    r = await api.mutate(
        f"mutation($id: ID!) {{ revokeToken(id: $id) {{ token {{ isActive revokedAt }} {ERR} }} }}",
        {"id": t["token"]["id"]},
        token=tenant.token,
    )
    assert r["token"]["isActive"] is False and r["token"]["revokedAt"]
    err = await api.error("{ viewer { role } }", token=t["secret"])
    assert err["extensions"]["code"] == "UNAUTHENTICATED"


async def test_memberships(api, tenant) -> None:
    add = await api.mutate(
        f"""mutation {{ addMember(input: {{email: "New.Person@Example.com", role: developer,
        name: "New", password: "long-enough-pw"}}) {{ membership {{ id role user {{ email name }} }}
        {ERR} }} }}""",
        token=tenant.token,
    )
    assert add["membership"]["user"] == {"email": "new.person@example.com", "name": "New"}
    mid = add["membership"]["id"]
    again = await api.mutate(
        f"""mutation {{ addMember(input: {{email: "new.person@example.com", role: viewer}})
        {{ membership {{ id }} {ERR} }} }}""",
        token=tenant.token,
    )
    assert again["errors"][0]["code"] == "conflict"
    bad_email = await api.mutate(
        f'mutation {{ addMember(input: {{email: "nope", role: viewer}}) {{ membership {{ id }}'
        f" {ERR} }} }}",
        token=tenant.token,
    )
    assert bad_email["errors"][0]["field"] == "email"
    ch = await api.mutate(
        f"mutation($id: ID!) {{ changeMemberRole(id: $id, role: analyst) {{ membership {{ role }}"
        f" {ERR} }} }}",
        {"id": mid},
        token=tenant.token,
    )
    assert ch["membership"]["role"] == "analyst"
    owner = await Membership.get(account_id=tenant.account.id, user_id=tenant.user.id)
    last = await api.mutate(
        f"mutation($id: ID!) {{ changeMemberRole(id: $id, role: admin) {{ membership {{ role }}"
        f" {ERR} }} }}",
        {"id": gid("Membership", owner.id)},
        token=tenant.token,
    )
    assert last["errors"][0]["code"] == "conflict"  # the last owner stays
    rm = await api.mutate(
        f"mutation($id: ID!) {{ removeMember(id: $id) {{ deletedId {ERR} }} }}",
        {"id": mid},
        token=tenant.token,
    )
    assert rm["errors"] == []
    assert {"member.add", "member.role", "member.remove"} <= set(await audit_actions(tenant))


async def test_duckdb_file_paths_are_for_owners_only(api, tenant) -> None:
    from tests.graphql.conftest import token_for

    q = """mutation($p: JSON) { createConnection(input: {name: "d%s", adapterType: "duckdb",
           details: $p}) { connection { id } errors { field message } } }"""
    admin = await token_for(tenant, "admin")
    refused = await api.mutate(q % "1", {"p": {"path": "/tmp/other-tenant.duckdb"}}, token=admin)
    assert refused["connection"] is None
    assert refused["errors"][0]["field"] == "details.path"
    owner = await token_for(tenant, "owner")
    relative = await api.mutate(q % "2", {"p": {"path": "rel.duckdb"}}, token=owner)
    assert relative["errors"][0]["field"] == "details.path"
    ok = await api.mutate(q % "3", {"p": {"path": "/tmp/mine.duckdb"}}, token=owner)
    assert ok["errors"] == [] and ok["connection"]["id"]
