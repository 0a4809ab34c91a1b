"""Process lifecycle: SIGTERM/SIGINT stop the server cleanly and take running dbt along."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp
import psutil

from .helpers import RpcClient, auth_headers, make_project, start_server
from .test_develop_dbt import SLOW_ARGS, is_gone


async def test_sigterm_cancels_running_dbt_and_exits_cleanly(tmp_path: Path) -> None:
    server = await start_server(make_project(tmp_path / "p"))
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{server.url}/ws", headers=auth_headers())
            rpc = RpcClient(ws)
            invoke = await rpc.send("dbt.invoke", {"args": SLOW_ARGS, "invocation": "slow"})
            await rpc.wait_for_notification(
                lambda n: n["method"] == "dbt.log" and isinstance(n["params"]["line"], dict)
                and n["params"]["line"]["info"]["name"] == "LogStartLine",
                timeout=120,
            )
            children = psutil.Process(server.proc.pid).children(recursive=True)
            dbt = [p for p in children if "dbt.cli.main" in " ".join(p.cmdline())]
            assert dbt
            rc = await server.stop(signal.SIGTERM)
            if invoke.done() and invoke.exception() is None:  # answered before the close
                assert invoke.result()["result"]["cancelled"] is True
            await rpc.close()
    finally:
        if server.proc.returncode is None:
            server.proc.kill()
    assert rc == 0, server.stderr
    assert "Traceback" not in server.stderr, server.stderr
    assert all(is_gone(p) for p in dbt)


async def test_sigint_while_warming_up_exits_cleanly(tmp_path: Path) -> None:
    server = await start_server(make_project(tmp_path / "p"))
    rc = await server.stop(signal.SIGINT)  # dbt is still being imported in the background
    assert rc == 0, server.stderr
    assert "Traceback" not in server.stderr, server.stderr
