"""Relay pagination: complete walks under concurrent inserts, page bounds, bad cursors."""

from __future__ import annotations

from server.models import Job
from tests.graphql.conftest import add_runs, gid

PAGE = """query($first: Int, $after: String) { runs(first: $first, after: $after) {
  totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  edges { cursor node { id createdAt } } } }"""


async def test_walk_runs_while_inserting(api, tenant) -> None:
    existing = await add_runs(tenant, 23, steps=0)
    expected = [gid("Run", r.id) for r in reversed(existing)]  # newest first
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        data = (await api.data(PAGE, {"first": 5, "after": after}, token=tenant.token))["runs"]
        seen += [e["node"]["id"] for e in data["edges"]]
        if data["edges"]:
            assert data["pageInfo"]["endCursor"] == data["edges"][-1]["cursor"]
            assert data["pageInfo"]["startCursor"] == data["edges"][0]["cursor"]
        assert data["pageInfo"]["hasPreviousPage"] == (after is not None)
        await add_runs(tenant, 2, steps=0)  # newer runs arrive during the walk
        pages += 1
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert seen == expected and len(set(seen)) == len(seen) and pages == 5
    created = [e for e in seen]
    assert created == expected


async def test_walk_jobs_in_creation_order(api, tenant) -> None:
    for i in range(7):
        await Job.create(
            account_id=tenant.account.id,
            project_id=tenant.project.id,
            environment_id=tenant.environment.id,
            name=f"j{i}",
            steps=["dbt run"],
        )
    names: list[str] = []
    after = None
    while True:
        data = (
            await api.data(
                "query($after: String) { jobs(first: 3, after: $after) { pageInfo { hasNextPage"
                " endCursor } edges { node { name } } } }",
                {"after": after},
                token=tenant.token,
            )
        )["jobs"]
        names += [e["node"]["name"] for e in data["edges"]]
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert names == ["build", *[f"j{i}" for i in range(7)]]


async def test_page_size_bounds(api, tenant) -> None:
    await add_runs(tenant, 3, steps=0)
    data = (await api.data(PAGE, {"first": 0}, token=tenant.token))["runs"]
    assert data["edges"] == [] and data["totalCount"] == 3
    default = (await api.data("{ runs { edges { node { id } } } }", token=tenant.token))["runs"]
    assert len(default["edges"]) == 3
    for first in (-1, 501, 2**31 - 1):
        err = await api.error(PAGE, {"first": first}, token=tenant.token)
        assert err["extensions"]["code"] == "BAD_USER_INPUT" and "first" in err["message"]
    # a literal out of range is refused while validating, before anything runs
    err = await api.error("{ runs(first: 100000) { totalCount } }", token=tenant.token)
    assert err["extensions"]["code"] == "BAD_USER_INPUT"
    err = await api.error("{ runs(first: 99999999999) { totalCount } }", token=tenant.token)
    assert "Int cannot represent" in err["message"] or err["extensions"]["code"] in (
        "BAD_USER_INPUT",
        "GRAPHQL_VALIDATION_FAILED",
    )


async def test_bad_cursors(api, tenant) -> None:
    jobs = await api.data("{ jobs(first: 1) { pageInfo { endCursor } } }", token=tenant.token)
    job_cursor = jobs["jobs"]["pageInfo"]["endCursor"]
    for cursor in ("garbage", "", "dDox", job_cursor, "dDo5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OjE"):
        err = await api.error(PAGE, {"first": 2, "after": cursor}, token=tenant.token)
        assert err["extensions"]["code"] == "BAD_USER_INPUT", (cursor, err)
        assert err["extensions"]["field"] == "after"
