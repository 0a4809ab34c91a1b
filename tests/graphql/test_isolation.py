"""Tenant isolation: account A's token can never read, count, change or detect account B's objects.

Every object type of B is tried by id (``node``, ``nodes``, typed getters), in
every listing and filter, and as the target of every mutation that takes an id;
the answers must be exactly those for an id that does not exist.
"""

from __future__ import annotations

import pytest

from server.models import Artifact, Environment, IdeSession, Membership, Token
from server.services import env_vars
from tests.factories import Tenant, make_tenant
from tests.graphql.conftest import add_runs, gid

ERR = "errors { code field message }"


@pytest.fixture
async def pair(platform) -> tuple[Tenant, Tenant, dict[str, int]]:
    a, b = await make_tenant(), await make_tenant()
    await add_runs(a, 2)
    (run,) = await add_runs(b, 1)
    step = (await run.steps.all())[0]
    art = await Artifact.create(
        account_id=b.account.id,
        run_id=run.id,
        step_index=1,
        path="manifest.json",
        size=1,
        sha256="0" * 64,
        object_key="k",
    )
    ide = await IdeSession.create(
        account_id=b.account.id, user_id=b.user.id, project_id=b.project.id
    )
    var = await env_vars.set_env_var(b.actor(), platform.vault, b.project.id, "DBT_B", "b")
    env = await Environment.get(id=b.environment.id)
    b_ids = {
        "Account": b.account.id,
        "User": b.user.id,
        "Membership": (await Membership.get(account_id=b.account.id)).id,
        "Token": (await Token.filter(account_id=b.account.id).first()).id,
        "Project": b.project.id,
        "Connection": env.connection_id,
        "Credentials": env.credentials_id,
        "Environment": env.id,
        "EnvVar": var.id,
        "Job": b.job.id,
        "Run": run.id,
        "RunStep": step.id,
        "Artifact": art.id,
        "IdeSession": ide.id,
    }
    return a, b, b_ids


async def test_by_id(api, pair) -> None:
    a, _b, b_ids = pair
    for type_name, pk in b_ids.items():
        foreign = gid(type_name, pk)
        data = await api.data(
            "query($id: ID!) { node(id: $id) { id } }", {"id": foreign}, token=a.token
        )
        assert data == {"node": None}, type_name
    data = await api.data(
        "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
        {"ids": [gid(t, pk) for t, pk in b_ids.items()]},
        token=a.token,
    )
    assert data["nodes"] == [None] * len(b_ids)
    for field, type_name in (
        ("project", "Project"),
        ("environment", "Environment"),
        ("connection", "Connection"),
        ("job", "Job"),
        ("run", "Run"),
    ):
        data = await api.data(
            f"query($id: ID!) {{ {field}(id: $id) {{ id }} }}",
            {"id": gid(type_name, b_ids[type_name])},
            token=a.token,
        )
        assert data == {field: None}, field


async def test_listings_and_counts(api, pair) -> None:
    a, b, _ = pair
    body = await api.call(
        """{ projects { totalCount edges { node { id name environments { id } jobs { id } } } }
             environments { totalCount edges { node { id } } }
             connections { totalCount edges { node { id } } }
             credentials { totalCount edges { node { id } } }
             jobs { totalCount edges { node { id } } }
             runs { totalCount edges { node { id steps { id } artifacts { id } } } }
             tokens { totalCount edges { node { id } } }
             memberships { totalCount edges { node { id user { email } } } }
             viewer { accounts { account { id } } } account { id } }""",
        token=a.token,
    )
    d = body["data"]
    assert d["runs"]["totalCount"] == 2
    for key in (
        "projects",
        "environments",
        "connections",
        "credentials",
        "jobs",
        "tokens",
        "memberships",
    ):
        assert d[key]["totalCount"] == 1, key
    text = str(body)
    for type_name in ("Account", "Project", "Job", "Environment"):
        pk = {
            "Account": b.account.id,
            "Project": b.project.id,
            "Job": b.job.id,
            "Environment": b.environment.id,
        }[type_name]
        assert gid(type_name, pk) not in text
    assert b.user.email not in text and b.account.name not in text


async def test_filters_with_foreign_ids(api, pair) -> None:
    a, b, _ = pair
    for f in (
        {"jobId": gid("Job", b.job.id)},
        {"projectId": gid("Project", b.project.id)},
        {"environmentId": gid("Environment", b.environment.id)},
    ):
        data = await api.data(
            "query($f: RunFilter) { runs(filter: $f) { totalCount } }", {"f": f}, token=a.token
        )
        assert data["runs"]["totalCount"] == 0, f
    data = await api.data(
        "query($p: ID!) { jobs(filter: {projectId: $p}) { totalCount }"
        " environments(filter: {projectId: $p}) { totalCount }"
        " credentials(filter: {projectId: $p}) { totalCount } }",
        {"p": gid("Project", b.project.id)},
        token=a.token,
    )
    assert data == {
        "jobs": {"totalCount": 0},
        "environments": {"totalCount": 0},
        "credentials": {"totalCount": 0},
    }


MUTATIONS = [
    ("updateProject", "Project", '(id: $id, input: {description: "x"})'),
    ("deleteProject", "Project", "(id: $id)"),
    ("createEnvironment", "Project", '(input: {projectId: $id, name: "x"})'),
    ("updateEnvironment", "Environment", '(id: $id, input: {name: "x"})'),
    ("deleteEnvironment", "Environment", "(id: $id)"),
    ("updateConnection", "Connection", '(id: $id, input: {name: "x"})'),
    ("deleteConnection", "Connection", "(id: $id)"),
    ("createCredentials", "Project", '(input: {projectId: $id, adapterType: "duckdb"})'),
    ("updateCredentials", "Credentials", '(id: $id, input: {name: "x"})'),
    ("deleteCredentials", "Credentials", "(id: $id)"),
    ("setEnvVar", "Project", '(input: {projectId: $id, name: "DBT_X", value: "v"})'),
    ("deleteEnvVar", "EnvVar", "(id: $id)"),
    ("createJob", "Environment", '(input: {environmentId: $id, name: "x", steps: ["dbt run"]})'),
    ("updateJob", "Job", '(id: $id, input: {name: "x"})'),
    ("deleteJob", "Job", "(id: $id)"),
    ("triggerJobRun", "Job", "(jobId: $id)"),
    ("cancelRun", "Run", "(id: $id)"),
    ("retryRun", "Run", "(id: $id)"),
    ("revokeToken", "Token", "(id: $id)"),
    ("changeMemberRole", "Membership", "(id: $id, role: viewer)"),
    ("removeMember", "Membership", "(id: $id)"),
]


async def test_mutations_on_foreign_ids_are_not_found(api, pair) -> None:
    a, _b, b_ids = pair
    for name, type_name, args in MUTATIONS:
        foreign = await api.mutate(
            f"mutation($id: ID!) {{ {name}{args} {{ {ERR} }} }}",
            {"id": gid(type_name, b_ids[type_name])},
            token=a.token,
        )
        missing = await api.mutate(
            f"mutation($id: ID!) {{ {name}{args} {{ {ERR} }} }}",
            {"id": gid(type_name, 10**15)},
            token=a.token,
        )
        assert foreign["errors"] and foreign["errors"][0]["code"] == "not_found", (name, foreign)
        # indistinguishable from an id that does not exist
        assert foreign == missing, name
    # and nothing of B changed
    data = await api.data("{ projects { edges { node { description } } } }", token=_b.token)
    assert data["projects"]["edges"][0]["node"]["description"] == ""


async def test_other_account_header_and_argument(api, pair) -> None:
    a, b, _ = pair
    err = await api.error(
        "{ runs { totalCount } }",
        token=a.token,
        headers={"X-Kiln-Account": gid("Account", b.account.id)},
    )
    assert err["extensions"]["code"] == "NOT_FOUND"
    err = await api.error(
        "query($a: ID) { runs(accountId: $a) { totalCount } }",
        {"a": gid("Account", b.account.id)},
        token=a.token,
    )
    assert err["extensions"]["code"] == "NOT_FOUND"
    res = await api.mutate(
        f'mutation($a: ID) {{ createProject(accountId: $a, input: {{name: "x",'
        f' repositoryUrl: "https://e.com/x.git"}}) {{ {ERR} }} }}',
        {"a": gid("Account", b.account.id)},
        token=a.token,
    )
    assert res["errors"][0]["code"] == "not_found"
