"""Bad and hostile input: each a clear error with a code, never a 500, nothing executed."""

from __future__ import annotations

from bench.sqlcount import counting
from tests.graphql.conftest import gid

ERR = "errors { code field message }"


async def test_depth_limit(api, tenant) -> None:
    inner = "id"
    for _ in range(6):
        inner = f"project {{ jobs {{ {inner} }} }}"
    query = f"{{ jobs {{ edges {{ node {{ {inner} }} }} }} }}"
    with counting() as statements:
        err = await api.error(query, token=tenant.token)
    assert err["extensions"]["code"] == "QUERY_TOO_COMPLEX" and "depth" in err["message"]
    assert statements() == 0  # refused before any SQL, even before authentication


async def test_alias_limit(api, tenant) -> None:
    fields = " ".join(f"a{i}: version" for i in range(31))
    err = await api.error(f"{{ {fields} }}", token=tenant.token)
    assert err["extensions"]["code"] == "QUERY_TOO_COMPLEX" and "aliases" in err["message"]
    ok = " ".join(f"a{i}: version" for i in range(30))
    await api.data(f"{{ {ok} }}", token=tenant.token)


async def test_size_limits(api, tenant) -> None:
    many = "{ " + " ".join(["version"] * 5000) + " }"
    err = await api.error(many, token=tenant.token)
    assert err["extensions"]["code"] == "QUERY_TOO_LARGE"
    long_text = "{ version }" + " " * 40_000
    err = await api.error(long_text, token=tenant.token)
    assert err["extensions"]["code"] == "QUERY_TOO_LARGE"
    resp = await api.client.post(
        "/graphql",
        data=b'{"query": "' + b" " * 300_000 + b'{ version }"}',
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 413
    assert (await resp.json())["errors"][0]["extensions"]["code"] == "QUERY_TOO_LARGE"


async def test_malformed_and_wrong_type_ids(api, tenant) -> None:
    cases = [
        ("query($id: ID!) { run(id: $id) { id } }", "!!!not-base64!!!"),
        ("query($id: ID!) { run(id: $id) { id } }", gid("Job", tenant.job.id)),
        ("query($id: ID!) { run(id: $id) { id } }", "UnVuOi0x"),  # Run:-1
        ("query($id: ID!) { run(id: $id) { id } }", "UnVuOjk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5"),
        ("query($id: ID!) { node(id: $id) { id } }", ""),
        ("query($id: ID!) { node(id: $id) { id } }", "x" * 500),
        ("query($id: ID!) { runs(filter: {jobId: $id}) { totalCount } }", gid("Run", 1)),
    ]
    for query, bad in cases:
        body = await api.call(query, {"id": bad}, token=tenant.token)
        err = body["errors"][0]
        assert err["extensions"]["code"] == "BAD_USER_INPUT", (bad, err)
        assert "id" in err["message"], err
    wrong_type = await api.mutate(
        f"mutation($id: ID!) {{ cancelRun(id: $id) {{ {ERR} }} }}",
        {"id": gid("Job", tenant.job.id)},
        token=tenant.token,
    )
    assert wrong_type["errors"][0]["code"] == "invalid"
    assert (
        wrong_type["errors"][0]["field"] == "id"
        and "not a Run id" in wrong_type["errors"][0]["message"]
    )


async def test_unknown_enum_and_wrong_types(api, tenant) -> None:
    for query, variables in (
        ("{ runs(filter: {status: bogus}) { totalCount } }", None),
        (
            "query($s: [RunStatus!]) { runs(filter: {status: $s}) { totalCount } }",
            {"s": ["SUCCESS"]},
        ),
        ("query($f: Int) { runs(first: $f) { totalCount } }", {"f": "ten"}),
        ("{ runs { nope } }", None),
        ("{ runs(first: 1.5) { totalCount } }", None),
    ):
        body = await api.call(query, variables, token=tenant.token)
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", body
    body = await api.call("{ runs { ", token=tenant.token)
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


async def test_http_level_garbage(api) -> None:
    resp = await api.client.post(
        "/graphql", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    resp = await api.client.post("/graphql", json={"nothing": 1})
    assert resp.status == 400
    resp = await api.client.put("/graphql", json={"query": "{ version }"})
    assert resp.status == 405
    resp = await api.client.get("/graphql", params={"query": "mutation { logout { ok } }"})
    assert resp.status in (400, 405)  # no mutations over GET


async def test_chunked_oversized_body(api) -> None:
    async def chunks():
        yield b'{"query": "'
        for _ in range(40):
            yield b" " * 10_000
        yield b'{ version }"}'

    resp = await api.client.post(
        "/graphql", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 413
