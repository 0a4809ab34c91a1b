"""dbt.*: streamed and cancellable invocations, warm compile, preview and lineage."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from pathlib import Path

import aiohttp
import psutil
import pytest

from .helpers import DevServer, RpcCallError, RpcClient, auth_headers

SLOW_ARGS = ["run", "--select", "slow_model", "--vars", "{kiln_slow: true}"]


def dbt_processes(server: DevServer) -> list[psutil.Process]:
    children = psutil.Process(server.proc.pid).children(recursive=True)
    return [p for p in children if "dbt.cli.main" in " ".join(p.cmdline())]


def is_gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_invoke_build_streams_logs(client: RpcClient) -> None:
    result = await client.call("dbt.invoke", args=["build"], invocation="build-1")
    assert result["invocation"] == "build-1"
    assert result["success"] is True and result["exitCode"] == 0 and not result["cancelled"]
    mine = [n for n in client.notifications if n["params"].get("invocation") == "build-1"]
    assert mine[0]["method"] == "dbt.started"
    lines = [n["params"]["line"] for n in mine if n["method"] == "dbt.log"]
    events = [line["info"]["name"] for line in lines if isinstance(line, dict)]
    assert "MainReportVersion" in events
    assert events.count("LogModelResult") == 2  # stg_orders and customer_totals
    assert "LogSeedResult" in events and "LogTestResult" in events
    done = next(line for line in lines if isinstance(line, dict)
                and line["info"]["name"] == "StatsLine")
    assert done["data"]["stats"]["error"] == 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "subcommand"),
        (["run-operation", "drop_everything"], "not allowed"),
        (["docs", "serve"], "docs generate"),
        (["init"], "not allowed"),
        (["build", "--profiles-dir", "/tmp"], "--profiles-dir"),
        (["run", "--target-path=/tmp/x"], "--target-path"),
        (["run", "--project-dir", ".."], "--project-dir"),
    ],
)
async def test_invoke_allow_list(client: RpcClient, args: list[str], fragment: str) -> None:
    with pytest.raises(RpcCallError) as info:
        await client.call("dbt.invoke", args=args)
    assert info.value.code == -32602
    assert fragment in info.value.message


async def test_requests_are_served_while_dbt_runs(client: RpcClient) -> None:
    invoke = await client.send("dbt.invoke", {"args": ["parse"], "invocation": "parse-1"})
    await client.wait_for_notification(lambda n: n["method"] == "dbt.started"
                                       and n["params"]["invocation"] == "parse-1")
    started = time.monotonic()
    read = await client.call("fs.read", path="README.md")
    elapsed = time.monotonic() - started
    assert read["content"].startswith("# workspace")
    assert not invoke.done(), "parse finished before the read: test proves nothing"
    assert elapsed < 1.0
    assert (await asyncio.wait_for(invoke, 120))["result"]["success"] is True


async def test_cancel_stops_dbt_and_reports_cancelled(client: RpcClient, server: DevServer
                                                      ) -> None:
    inv = f"slow-{uuid.uuid4().hex[:6]}"
    invoke = await client.send("dbt.invoke", {"args": SLOW_ARGS, "invocation": inv})
    # Wait until the slow model is actually executing in DuckDB.
    await client.wait_for_notification(
        lambda n: n["method"] == "dbt.log" and n["params"]["invocation"] == inv
        and isinstance(n["params"]["line"], dict)
        and n["params"]["line"]["info"]["name"] == "LogStartLine",
        timeout=120,
    )
    procs = dbt_processes(server)
    assert procs, "no dbt subprocess found"
    info = await client.call("session.info")
    assert inv in info["invocations"]

    # A second invocation queues behind the first; cancelling it never starts dbt.
    queued = await client.send("dbt.invoke", {"args": ["parse"], "invocation": f"{inv}-q"})
    await client.wait_for_notification(lambda n: n["method"] == "dbt.started"
                                       and n["params"]["invocation"] == f"{inv}-q")
    await client.call("dbt.cancel", invocation=f"{inv}-q")
    queued_result = (await asyncio.wait_for(queued, 10))["result"]
    assert queued_result["cancelled"] is True and queued_result["exitCode"] is None
    assert not invoke.done()

    started = time.monotonic()
    assert await client.call("dbt.cancel", invocation=inv) == {"invocation": inv,
                                                               "cancelled": True}
    result = (await asyncio.wait_for(invoke, 30))["result"]
    assert time.monotonic() - started < 10
    assert result["cancelled"] is True and result["success"] is False
    assert result["exitCode"] != 0
    assert all(is_gone(p) for p in procs)
    assert dbt_processes(server) == []
    assert inv not in (await client.call("session.info"))["invocations"]

    with pytest.raises(RpcCallError) as err:
        await client.call("dbt.cancel", invocation=inv)
    assert err.value.code == 1021 and err.value.data["code"] == "unknown_invocation"


async def test_closing_the_socket_kills_its_dbt(server: DevServer) -> None:
    async with aiohttp.ClientSession() as http:
        rpc = RpcClient(await http.ws_connect(f"{server.url}/ws", headers=auth_headers()))
        await rpc.send("dbt.invoke", {"args": SLOW_ARGS, "invocation": "orphan"})
        await rpc.wait_for_notification(
            lambda n: n["method"] == "dbt.log" and isinstance(n["params"]["line"], dict)
            and n["params"]["line"]["info"]["name"] == "LogStartLine",
            timeout=120,
        )
        procs = dbt_processes(server)
        assert procs
        await rpc.close()
    for _ in range(100):
        if all(is_gone(p) for p in procs):
            break
        await asyncio.sleep(0.1)
    assert all(is_gone(p) for p in procs)


async def test_compile_inline_sql(client: RpcClient) -> None:
    result = await client.call("dbt.compile", sql="select * from {{ ref('stg_orders') }}")
    assert '"main"."stg_orders"' in result["compiledSql"]
    assert "{{" not in result["compiledSql"]
    with pytest.raises(RpcCallError) as info:
        await client.call("dbt.compile", sql="select {{ 1 + }}")
    assert info.value.code == 1020 and info.value.data["code"] == "dbt_error"
    with pytest.raises(RpcCallError) as info:
        await client.call("dbt.compile", sql="select * from {{ ref('no_such_model') }}")
    assert "no_such_model" in info.value.message
    # A failed inline call leaves the warm runner usable (dbt 1.11 leaks the node).
    again = await client.call("dbt.compile", sql="select 1 as one")
    assert again["compiledSql"].strip() == "select 1 as one"
    # The session secret is not visible to dbt.
    env = await client.call(
        "dbt.compile", sql="select '{{ env_var(\"KILN_DEVELOP_SECRET\", \"absent\") }}'"
    )
    assert env["compiledSql"].strip() == "select 'absent'"
    with pytest.raises(RpcCallError) as info:
        await client.call("dbt.compile", sql="select 1", path="analytics/models/x.sql")
    assert info.value.code == -32602


async def test_compile_reflects_a_just_written_edit(client: RpcClient, workspace: Path) -> None:
    path = "analytics/models/customer_totals.sql"
    original = await client.call("fs.read", path=path)
    before = await client.call("dbt.compile", path=path)
    assert before["node"] == "model.kiln_dev_test.customer_totals"
    assert "42 as answer" not in before["compiledSql"]
    edited = original["content"].replace("count(*) as orders", "count(*) as orders, 42 as answer")
    try:
        await client.call("fs.write", path=path, content=edited, version=original["version"])
        after = await client.call("dbt.compile", path=path)
        assert "42 as answer" in after["compiledSql"]
        assert '"main"."stg_orders"' in after["compiledSql"]

        # A brand-new model is known to the very next inline compile.
        name = f"m_{uuid.uuid4().hex[:6]}"
        new_path = f"analytics/models/{name}.sql"
        await client.call("fs.write", path=new_path, content="select 7 as seven\n")
        inline = await client.call("dbt.compile", sql=f"select * from {{{{ ref('{name}') }}}}")
        assert f'"main"."{name}"' in inline["compiledSql"]
        await client.call("fs.delete", path=new_path)
        with pytest.raises(RpcCallError):
            await client.call("dbt.compile", sql=f"select * from {{{{ ref('{name}') }}}}")
    finally:
        await client.call("fs.write", path=path, content=original["content"])
    with pytest.raises(RpcCallError) as info:
        await client.call("dbt.compile", path="README.md")
    assert info.value.code == 1002


async def test_preview_columns_rows_and_limits(client: RpcClient) -> None:
    result = await client.call(
        "dbt.preview", sql="select * from {{ ref('stg_orders') }} order by id"
    )
    assert result["columns"] == ["id", "customer", "amount", "ordered_at"]
    assert result["rows"][0] == [1, "alice", 10.5, "2024-01-01"]
    assert result["rowCount"] == 4 and len(result["rows"]) == 4

    semicolon = await client.call("dbt.preview", sql="select 1 as x;\n")
    assert semicolon["rows"] == [[1]]
    limited = await client.call("dbt.preview", sql="select range as n from range(1000)", limit=7)
    assert len(limited["rows"]) == 7 and limited["columns"] == ["n"]
    default = await client.call("dbt.preview", sql="select range as n from range(1000)")
    assert len(default["rows"]) == 500
    big = await client.call("dbt.preview", sql="select range as n from range(20000)",
                            limit=10000)
    assert len(big["rows"]) == 10000

    for bad in (10001, 0, "10"):
        with pytest.raises(RpcCallError) as info:
            await client.call("dbt.preview", sql="select 1", limit=bad)
        assert info.value.code == -32602 and "'limit'" in info.value.message

    with pytest.raises(RpcCallError) as info:
        await client.call("dbt.preview", sql="select * from no_such_table")
    assert info.value.code == 1020 and "no_such_table" in info.value.message


async def test_preview_values_are_json_and_never_logged(
    client: RpcClient, server: DevServer, workspace: Path
) -> None:
    # The value only exists in the result, not in the SQL text (which may be written).
    seed = uuid.uuid4().hex
    marker = hashlib.md5(seed.encode()).hexdigest()
    result = await client.call(
        "dbt.preview",
        sql=f"select md5('{seed}') as m, 1.25::decimal(10,2) as d, date '2024-02-29' as day, "
            "timestamp '2024-01-01 10:00:00' as ts, null as nothing, true as flag",
    )
    assert result["rows"] == [[marker, 1.25, "2024-02-29", "2024-01-01T10:00:00", None, True]]
    await asyncio.sleep(0.2)
    assert marker not in server.stderr
    for path in workspace.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert marker.encode() not in path.read_bytes(), f"rows written to {path}"


async def test_lineage(client: RpcClient) -> None:
    seed, stg, totals = (
        "seed.kiln_dev_test.raw_orders",
        "model.kiln_dev_test.stg_orders",
        "model.kiln_dev_test.customer_totals",
    )
    up = await client.call("dbt.lineage", select="+customer_totals")
    assert {n["id"] for n in up["nodes"]} == {seed, stg, totals}
    assert {(e["from"], e["to"]) for e in up["edges"]} == {(seed, stg), (stg, totals)}
    node = next(n for n in up["nodes"] if n["id"] == stg)
    assert node["name"] == "stg_orders" and node["resourceType"] == "model"

    down = await client.call("dbt.lineage", select="stg_orders+")
    assert {n["id"] for n in down["nodes"]} == {stg, totals}  # tests are not lineage nodes
    assert down["edges"] == [{"from": stg, "to": totals}]

    single = await client.call("dbt.lineage", select="stg_orders")
    assert [n["id"] for n in single["nodes"]] == [stg] and single["edges"] == []
    assert (await client.call("dbt.lineage", select="no_such_model"))["nodes"] == []


async def test_warm_runner_and_invocations_share_duckdb(client: RpcClient) -> None:
    """A preview right before a run, and one during it: nobody hits DuckDB's file lock."""
    sql = "select count(*) as n from {{ ref('stg_orders') }}"
    assert (await client.call("dbt.preview", sql=sql))["rows"] == [[4]]
    invoke = await client.send("dbt.invoke", {"args": ["run", "--select", "stg_orders"],
                                              "invocation": "run-shared"})
    await client.wait_for_notification(lambda n: n["method"] == "dbt.started"
                                       and n["params"]["invocation"] == "run-shared")
    during = await client.call("dbt.preview", sql=sql)  # waits for the run, then answers
    assert invoke.done()
    assert (await invoke)["result"]["success"] is True
    assert during["rows"] == [[4]]


async def test_a_project_that_does_not_parse_is_reported_then_recovers(client: RpcClient
                                                                       ) -> None:
    path = f"analytics/models/broken_{uuid.uuid4().hex[:6]}.sql"
    await client.call("fs.write", path=path, content="select {{ ref( }}\n")
    try:
        for _ in range(2):  # the failure is remembered until something changes
            with pytest.raises(RpcCallError) as info:
                await client.call("dbt.compile", sql="select 1")
            assert info.value.code == 1001
            assert info.value.data["code"] == "manifest_unavailable"
        manifest = (await client.call("session.info"))["manifest"]
        assert manifest["state"] == "error" and manifest["error"]
    finally:
        await client.call("fs.delete", path=path)
    assert (await client.call("dbt.compile", sql="select 1"))["compiledSql"].strip() == "select 1"
    assert (await client.call("session.info"))["manifest"]["state"] == "ready"
