"""The role matrix: each role x each operation is allowed or refused with ``forbidden``.

Callers use personal tokens of members with that role, so user-owned operations
(development credentials) are covered too.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from server.models import Run, RunStatus
from server.services import accounts
from tests.factories import Tenant, make_tenant
from tests.graphql.conftest import Api, gid

ROLES = ("owner", "admin", "developer", "analyst", "job_runner", "viewer")
ERR = "errors { code field message }"


@dataclass
class Op:
    name: str
    allowed: set[str]
    run: Callable[[Api, Tenant, str], Awaitable[dict]]


async def _m(api: Api, token: str, query: str, variables: dict | None = None) -> dict:
    return await api.mutate(query, variables or {}, token=token)


def _tag() -> str:
    return uuid.uuid4().hex[:8]


async def read_runs(api: Api, t: Tenant, token: str) -> dict:
    data = await api.data("{ runs { totalCount } jobs { totalCount } }", token=token)
    return {"errors": [], **data}


async def trigger(api: Api, t: Tenant, token: str) -> dict:
    return await _m(
        api,
        token,
        f"mutation($j: ID!) {{ triggerJobRun(jobId: $j) {{ {ERR} }} }}",
        {"j": gid("Job", t.job.id)},
    )


async def cancel(api: Api, t: Tenant, token: str) -> dict:
    run = await Run.create(
        account_id=t.account.id,
        project_id=t.project.id,
        environment_id=t.environment.id,
        job_id=t.job.id,
        status=RunStatus.QUEUED,
    )
    return await _m(
        api,
        token,
        f"mutation($id: ID!) {{ cancelRun(id: $id) {{ {ERR} }} }}",
        {"id": gid("Run", run.id)},
    )


async def edit_job(api: Api, t: Tenant, token: str) -> dict:
    return await _m(
        api,
        token,
        f'mutation($id: ID!) {{ updateJob(id: $id, input: {{description: "x"}}) {{ {ERR} }} }}',
        {"id": gid("Job", t.job.id)},
    )


async def create_job(api: Api, t: Tenant, token: str) -> dict:
    return await _m(
        api,
        token,
        f'mutation($e: ID!) {{ createJob(input: {{environmentId: $e, name: "j{_tag()}",'
        f' steps: ["dbt run"]}}) {{ {ERR} }} }}',
        {"e": gid("Environment", t.environment.id)},
    )


async def create_project(api: Api, t: Tenant, token: str) -> dict:
    return await _m(
        api,
        token,
        f'mutation {{ createProject(input: {{name: "p{_tag()}",'
        f' repositoryUrl: "https://example.com/r.git"}}) {{ {ERR} }} }}',
    )


async def create_environment(api: Api, t: Tenant, token: str) -> dict:
    return await _m(
        api,
        token,
        f'mutation($p: ID!) {{ createEnvironment(input: {{projectId: $p, name: "e{_tag()}"}})'
        f" {{ {ERR} }} }}",
        {"p": gid("Project", t.project.id)},
    )


async def create_connection(api: Api, t: Tenant, token: str) -> dict:
    return await _m(
        api,
        token,
        f'mutation {{ createConnection(input: {{name: "c{_tag()}", adapterType: "postgres"}})'
        f" {{ {ERR} }} }}",
    )


async def deployment_credentials(api: Api, t: Tenant, token: str) -> dict:
    return await _m(
        api,
        token,
        f'mutation($p: ID!) {{ createCredentials(input: {{projectId: $p, adapterType: "duckdb",'
        f' secrets: {{password: "x"}}}}) {{ {ERR} }} }}',
        {"p": gid("Project", t.project.id)},
    )


async def own_credentials(api: Api, t: Tenant, token: str) -> dict:
    return await _m(
        api,
        token,
        f'mutation($p: ID!) {{ createCredentials(input: {{projectId: $p, adapterType: "duckdb",'
        f" forUser: true}}) {{ {ERR} }} }}",
        {"p": gid("Project", t.project.id)},
    )


async def secret_env_var(api: Api, t: Tenant, token: str) -> dict:
    return await _m(
        api,
        token,
        f'mutation($p: ID!) {{ setEnvVar(input: {{projectId: $p, name: "DBT_ENV_SECRET_A",'
        f' value: "v"}}) {{ {ERR} }} }}',
        {"p": gid("Project", t.project.id)},
    )


async def service_token(api: Api, t: Tenant, token: str) -> dict:
    return await _m(
        api,
        token,
        f'mutation {{ createToken(input: {{name: "s{_tag()}", role: viewer}}) {{ {ERR} }} }}',
    )


async def add_member(api: Api, t: Tenant, token: str) -> dict:
    return await _m(
        api,
        token,
        f'mutation {{ addMember(input: {{email: "m{_tag()}@example.com", role: viewer}})'
        f" {{ {ERR} }} }}",
    )


EDITORS = {"owner", "admin"}
OPS = [
    Op("read", set(ROLES), read_runs),
    Op("trigger run", {"owner", "admin", "developer", "job_runner"}, trigger),
    Op("cancel run", {"owner", "admin", "developer", "job_runner"}, cancel),
    Op("edit job", {"owner", "admin", "developer"}, edit_job),
    Op("create job", {"owner", "admin", "developer"}, create_job),
    Op("create project", EDITORS, create_project),
    Op("create environment", EDITORS, create_environment),
    Op("create connection", EDITORS, create_connection),
    Op("deployment credentials", EDITORS, deployment_credentials),
    Op("own development credentials", {"owner", "admin", "developer", "analyst"}, own_credentials),
    Op("secret env var", EDITORS, secret_env_var),
    Op("service token", EDITORS, service_token),
    Op("add member", EDITORS, add_member),
]


@pytest.mark.parametrize("role", ROLES)
async def test_role_matrix(api, platform, role: str) -> None:
    t = await make_tenant()
    user = await accounts.create_user(f"{role}-{_tag()}@example.com")
    await accounts.add_member(t.account, user, role)
    token = (await accounts.create_token(t.account, name="p", role="owner", user=user)).secret
    who = await api.data("{ viewer { role user { email } } }", token=token)
    assert who["viewer"]["role"] == role  # a personal token is capped by its user's role
    outcome = {}
    for op in OPS:
        payload = await op.run(api, t, token)
        codes = [e["code"] for e in payload["errors"]]
        outcome[op.name] = "allowed" if not codes else codes[0]
    expected = {op.name: "allowed" if role in op.allowed else "forbidden" for op in OPS}
    assert outcome == expected


async def test_nobody_grants_above_their_rank(api, platform) -> None:
    t = await make_tenant()
    admin = await accounts.create_token(t.account, name="a", role="admin")
    res = await api.mutate(
        f'mutation {{ createToken(input: {{name: "x", role: owner}}) {{ {ERR} }} }}',
        token=admin.secret,
    )
    assert res["errors"][0]["code"] == "forbidden"
    res = await api.mutate(
        f'mutation {{ addMember(input: {{email: "o{_tag()}@example.com", role: owner}})'
        f" {{ {ERR} }} }}",
        token=admin.secret,
    )
    assert res["errors"][0]["code"] == "forbidden"
