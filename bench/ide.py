"""IDE benchmark: session cold start, and warm compile/preview against the dbt CLI.

On a scratch database, a gateway (app + IDE front) and a broker with the
local spawner run in this process; the develop server is a real
``kiln develop`` subprocess on a copy of ``examples/shop``. Measured:

* cold start: ``startIdeSession`` to the first JSON-RPC answer through the
  gateway (workspace creation, process start, health check, proxy);
* warm ``dbt.compile`` and ``dbt.preview`` p50 over the websocket, against
  ``dbt compile --inline`` and ``dbt show --inline`` run as commands in the
  same workspace (the anchor: what a developer pays without a warm server).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import row, scratch_database
from server import crypto
from server.config import load_settings
from server.models import IdeSession
from server.platform import Platform
from server.services import accounts
from server.services.actor import Actor

GROUP = "IDE"
ROOT = Path(__file__).resolve().parents[1]
SQL = "select customer_id, count(*) as n from {{ ref('stg_orders') }} group by 1"


async def _rpc(ws: aiohttp.ClientWebSocketResponse, ids: Any, method: str, **params: Any) -> Any:
    rid = next(ids)
    await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}))
    while True:
        msg = json.loads((await ws.receive()).data)
        if msg.get("id") == rid:
            if "error" in msg:
                raise RuntimeError(f"{method}: {msg['error']}")
            return msg["result"]


def _cli(workspace: Path, profiles: Path, *args: str) -> float:
    dbt = [sys.executable, "-c", "from dbt.cli.main import cli; cli()"]
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    t0 = time.perf_counter()
    out = subprocess.run(
        [*dbt, *args, "--profiles-dir", str(profiles), "--project-dir", str(workspace)],
        env=env,
        capture_output=True,
        text=True,
        cwd=workspace,
    )
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"dbt {args[0]} failed: {out.stdout[-500:]}")
    return elapsed


async def run(quick: bool) -> list[dict[str, Any]]:
    from bench.common import SMOKE
    from ide_broker.broker import Broker
    from server.gateway.app import build_app
    from server.gateway.ide import make_resolver
    from server.gateway.ide_proxy import serve

    rounds = 3 if SMOKE else 10 if quick else 40
    cli_rounds = 1 if SMOKE else 2 if quick else 5
    tmp = Path(tempfile.mkdtemp(prefix="kiln-bench-ide-"))
    shop = tmp / "shop"
    shutil.copytree(
        ROOT / "examples" / "shop",
        shop,
        ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"),
    )
    async with scratch_database() as url:
        settings = load_settings(
            {
                "KILN_DATABASE_URL": url,
                "KILN_DATA_DIR": str(tmp / "data"),
                "KILN_SECRET_KEY": crypto.generate_key(),
            }
        )
        platform = await Platform.open(settings, apply_migrations=False)
        broker = Broker(platform)
        platform.services["ide_broker"] = broker
        runner = web.AppRunner(build_app(platform), handle_signals=False)
        await runner.setup()
        front = await serve(runner, "127.0.0.1", 0, make_resolver(broker))
        port = front.sockets[0].getsockname()[1]
        try:
            from server.models import Project

            account = await accounts.create_account("bench")
            user = await accounts.create_user("dev@bench.local", password="benchmark-pw")
            await accounts.add_member(account, user, "developer")
            token = (
                await accounts.create_token(account, name="b", role="developer", user=user)
            ).secret
            project = await Project.create(account=account, name="shop", bundled_path=str(shop))
            actor = Actor(account.id, "developer", user.id)

            t0 = time.perf_counter()
            session = await broker.start_session(actor, project.id)
            while (s := await IdeSession.get(id=session.id)).state not in ("ready", "failed"):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            if s.state != "ready":
                raise RuntimeError(f"session failed: {s.failure_reason}")
            ids = itertools.count(1)
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(
                    f"http://127.0.0.1:{port}/ide/{session.id}/ws",
                    headers={"Authorization": f"Bearer {token}"},
                )
                await _rpc(ws, ids, "session.info")
                cold = time.perf_counter() - t0
                # build the dev database once so previews have tables
                await _rpc(ws, ids, "dbt.invoke", args=["build"])
                await _rpc(ws, ids, "dbt.compile", sql=SQL)  # warm up (first parse)
                compile_s, preview_s = [], []
                for _ in range(rounds):
                    t = time.perf_counter()
                    await _rpc(ws, ids, "dbt.compile", sql=SQL)
                    compile_s.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    await _rpc(ws, ids, "dbt.preview", sql=SQL, limit=100)
                    preview_s.append(time.perf_counter() - t)
                await ws.close()
            await broker.stop_session(actor, session.id)
            workspace = settings.data_dir / "workspaces" / f"{account.id}/{user.id}/{project.id}"
            profiles = settings.data_dir / "ide" / str(session.id) / "profiles"
            cli_compile = statistics.median(
                _cli(workspace, profiles, "compile", "--inline", SQL) for _ in range(cli_rounds)
            )
            cli_show = statistics.median(
                _cli(workspace, profiles, "show", "--inline", SQL, "--limit", "100")
                for _ in range(cli_rounds)
            )
        finally:
            front.close()
            await runner.cleanup()
            await broker.close()
            await platform.close()
            shutil.rmtree(tmp, ignore_errors=True)
    c50, p50 = statistics.median(compile_s), statistics.median(preview_s)
    return [
        row(
            GROUP, "session cold start to first RPC answer", "s", cold, goal="< 3 s", met=cold < 3.0
        ),
        row(
            GROUP,
            "warm dbt.compile p50 (vs dbt compile CLI)",
            "s",
            c50,
            anchor=cli_compile,
            anchor_name="dbt compile --inline",
            goal="<= 0.1x CLI",
            met=c50 <= cli_compile / 10,
        ),
        row(
            GROUP,
            "warm dbt.preview p50 (vs dbt show CLI)",
            "s",
            p50,
            anchor=cli_show,
            anchor_name="dbt show --inline",
            goal="<= 0.1x CLI",
            met=p50 <= cli_show / 10,
        ),
    ]


if __name__ == "__main__":
    for r in asyncio.run(run(quick=True)):
        print(r)
