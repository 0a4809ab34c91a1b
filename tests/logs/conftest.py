"""Live-log fixtures: an in-process API (ingest + /graphql websockets + logs.txt) on a port.

Lines go in through the real ingest endpoint with a run token, exactly as a
worker sends them; subscribers are real websocket clients (aiohttp's, and
gql's in the protocol tests) against the real server and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from server import crypto
from server.gateway.app import build_app
from server.ids import to_global_id
from server.logs.hub import stop_hubs
from server.models import Run, RunStatus
from server.platform import Platform
from tests.conftest import free_port
from tests.factories import Tenant, make_tenant

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
RUN_LOGS = (
    "subscription L($run: ID!, $after: Int) { runLogs(runId: $run, after: $after) "
    "{ cursor done lines { seq step ts level message eventName nodeId } } }"
)


@dataclasses.dataclass
class Api:
    platform: Platform
    url: str
    http: aiohttp.ClientSession

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/graphql"


@pytest.fixture(scope="session")
async def api(platform: Platform) -> AsyncIterator[Api]:
    p = dataclasses.replace(platform, services={})
    app = build_app(p)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield Api(p, f"http://127.0.0.1:{port}", http)
    await http.close()
    await stop_hubs(p)
    await runner.cleanup()


@pytest.fixture(params=["shortcut", "notify"])
def delivery(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways lines reach the hub: straight from this process's ingest, or by NOTIFY."""
    if request.param == "notify":
        from server.logs import ingest

        monkeypatch.setattr(ingest, "_listeners", [])
    return request.param


@pytest.fixture
def notify_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines reach the hub by NOTIFY and a read only (as from another API process)."""
    from server.logs import ingest

    monkeypatch.setattr(ingest, "_listeners", [])


@dataclasses.dataclass
class LiveRun:
    api: Api
    tenant: Tenant
    run: Run
    token: str
    seq: int = 0

    @property
    def gid(self) -> str:
        return to_global_id("Run", self.run.id)

    async def emit(self, n: int, *, size: int = 1, message: str = "line {seq}") -> None:
        """Send ``n`` lines in batches of ``size`` through the ingest endpoint."""
        for start in range(0, n, size):
            lines = []
            for _ in range(min(size, n - start)):
                self.seq += 1
                lines.append(
                    {
                        "seq": self.seq,
                        "step": 1 + self.seq // 100,
                        "ts": datetime.now(UTC).isoformat(),
                        "level": ("info", "debug", "warn", "error")[self.seq % 4],
                        "message": message.format(seq=self.seq),
                        "eventName": "LogLine",
                        "nodeId": f"model.shop.m{self.seq % 7}",
                    }
                )
            await self.post("logs", {"lines": lines})

    async def post(self, what: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.api.http.post(
            f"{self.api.url}/internal/runs/{self.run.id}/{what}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def finish(self, status: str = "success") -> None:
        await self.post("finish", {"status": status})


async def start_run(api: Api, tenant: Tenant | None = None) -> LiveRun:
    """A run in ``running`` with a worker token, as the dispatcher would leave it."""
    t = tenant or await make_tenant()
    token = secrets.token_urlsafe(24)
    run = await Run.create(
        account=t.account,
        project=t.project,
        environment=t.environment,
        job=t.job,
        status=RunStatus.RUNNING,
        started_at=datetime.now(UTC),
        dequeued_at=datetime.now(UTC),
        heartbeat_at=datetime.now(UTC),
        worker_token_hash=crypto.hash_token(token),
        steps_spec=[{"command": "dbt build", "kind": "dbt"}],
    )
    return LiveRun(api, t, run, token)


class Client:
    """A GraphQL websocket client speaking either protocol (aiohttp's ws client)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.ids = itertools.count(1)

    @classmethod
    async def connect(
        cls,
        api: Api,
        token: str | None,
        *,
        protocol: str = TRANSPORT_WS,
        payload: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> Client:
        ws = await (session or api.http).ws_connect(
            api.ws_url, protocols=[protocol], headers=headers or {}, autoping=True
        )
        c = cls(ws, protocol)
        if payload is None and token is not None:
            payload = {"authorization": f"Bearer {token}"}
        await c.send({"type": "connection_init", "payload": payload or {}})
        ack = await c.recv()
        assert ack["type"] == "connection_ack", ack
        return c

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(msg))

    async def recv(self, timeout: float = 20) -> dict[str, Any]:
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
            if msg.type != aiohttp.WSMsgType.TEXT:
                code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else self.ws.close_code
                return {"type": "closed", "code": code, "msg": msg}
            doc = json.loads(msg.data)
            if doc["type"] in ("ka", "ping", "pong"):
                if doc["type"] == "ping":
                    await self.send({"type": "pong"})
                continue
            return doc

    async def subscribe(self, query: str, variables: dict[str, Any]) -> str:
        op = str(next(self.ids))
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.send(
            {"id": op, "type": kind, "payload": {"query": query, "variables": variables}}
        )
        return op

    async def stop(self, op: str) -> None:
        await self.send({"id": op, "type": "complete" if self.protocol == TRANSPORT_WS else "stop"})

    async def logs(self, run: LiveRun, after: int | None = None, timeout: float = 30) -> Batches:
        op = await self.subscribe(RUN_LOGS, {"run": run.gid, "after": after})
        return Batches(self, op, timeout)

    async def close(self) -> None:
        await self.ws.close()


class Batches:
    """Collects one runLogs subscription's batches."""

    def __init__(self, client: Client, op: str, timeout: float) -> None:
        self.client = client
        self.op = op
        self.timeout = timeout
        self.batches: list[dict[str, Any]] = []
        self.completed = False
        self.error: Any = None

    @property
    def seqs(self) -> list[int]:
        return [ln["seq"] for b in self.batches for ln in b["lines"]]

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [ln for b in self.batches for ln in b["lines"]]

    @property
    def cursor(self) -> int:
        return self.batches[-1]["cursor"] if self.batches else 0

    async def next(self) -> dict[str, Any] | None:
        msg = await self.client.recv(self.timeout)
        if msg.get("id") != self.op:
            raise AssertionError(f"unexpected message {msg}")
        if msg["type"] in ("next", "data"):
            payload = msg["payload"]
            assert not payload.get("errors"), payload
            batch = payload["data"]["runLogs"]
            self.batches.append(batch)
            return batch
        if msg["type"] == "complete":
            self.completed = True
            return None
        self.error = msg
        return None

    async def until(self, seq: int) -> None:
        while self.cursor < seq:
            if await self.next() is None:
                raise AssertionError(f"stream ended at {self.cursor}: {self.error}")

    async def to_end(self) -> None:
        while await self.next() is not None:
            pass
        assert self.error is None, self.error
        assert self.batches and self.batches[-1]["done"], self.batches[-1:]
