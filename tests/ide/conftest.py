"""An in-process gateway (aiohttp app + IDE front) with a real broker and LocalSpawner."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ide_broker.broker import Broker
from server.gateway.app import build_app
from server.gateway.ide import make_resolver
from server.gateway.ide_proxy import serve
from server.models import IdeSession
from server.services import accounts
from tests.conftest import ROOT, free_port
from tests.factories import Tenant, make_tenant


@dataclass
class Gateway:
    url: str
    broker: Broker


@pytest.fixture(scope="session")
async def gateway(platform) -> AsyncIterator[Gateway]:
    broker = Broker(platform)
    platform.services["ide_broker"] = broker
    app = build_app(platform)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    front = await serve(runner, "127.0.0.1", port, make_resolver(broker), activity_interval=0.2)
    yield Gateway(f"http://127.0.0.1:{port}", broker)
    front.close()
    await runner.cleanup()
    for s in await IdeSession.filter(state__in=("pending", "ready")):
        await broker._stop(s, reason=None)
    await broker.close()


@dataclass
class Developer:
    tenant: Tenant
    token: str  # personal token


async def make_developer(tmp_path: Path, role: str = "developer") -> Developer:
    project_copy = tmp_path / "shop"
    if not project_copy.exists():
        shutil.copytree(
            ROOT / "examples" / "shop",
            project_copy,
            ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"),
        )
    t = await make_tenant(role=role, project_path=str(project_copy))
    issued = await accounts.create_token(t.account, name="me", role=role, user=t.user)
    return Developer(t, issued.secret)


async def wait_state(session_id: int, states: tuple[str, ...], timeout: float = 90) -> IdeSession:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        s = await IdeSession.get(id=session_id)
        if s.state in states:
            return s
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"session stayed {s.state}: {s.failure_reason}")
        await asyncio.sleep(0.1)


class Rpc:
    """A JSON-RPC 2.0 client over one websocket; collects notifications."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.notifications: list[dict[str, Any]] = []

    async def call(self, method: str, timeout: float = 120, **params: Any) -> dict[str, Any]:
        rid = next(self.ids)
        await self.ws.send_str(
            json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        )
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            doc = json.loads(msg.data)
            if doc.get("id") == rid:
                return doc
            self.notifications.append(doc)
