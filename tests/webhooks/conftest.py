"""A local HTTP receiver for webhook deliveries, and the webhook tasks without a full scheduler.

The receiver records every request per path and answers with programmed
statuses (or a delay) before answering 200. :class:`Tasks` runs the two
webhook tasks exactly as ``build_scheduler`` registers them, on a private
LISTEN connection, with short intervals and backoff.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from server.clock import WallClock
from server.events import EventListener
from server.platform import Platform
from server.webhooks.tasks import add_webhook_tasks
from tests.conftest import free_port
from tests.rest.conftest import gateway  # noqa: F401 - the in-process gateway fixture


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    requests: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    answers: dict[str, list[int | float]] = field(default_factory=lambda: defaultdict(list))

    def hook(self, name: str) -> str:
        return f"{self.url}/hook/{name}"

    def got(self, name: str) -> list[Received]:
        return self.requests[name]

    def program(self, name: str, *answers: int | float) -> None:
        """Answer the next requests with these statuses (an int) or after a delay (a float)."""
        self.answers[name].extend(answers)


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    rec = Receiver(f"http://127.0.0.1:{port}")

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        answer = rec.answers[name].pop(0) if rec.answers[name] else 200
        if isinstance(answer, float):
            await asyncio.sleep(answer)
            answer = 200
        rec.requests[name].append(Received(dict(request.headers), body))
        return web.Response(status=int(answer), text="ok")

    app = web.Application()
    app.router.add_post("/hook/{name}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield rec
    await runner.cleanup()


class Tasks:
    """The webhook tasks of one scheduler process."""

    def __init__(self, platform: Platform, *, leader: bool = True) -> None:
        self.platform = platform
        self.leader = leader
        self.events: EventListener | None = None
        self.sched: Any = None

    async def start(self) -> Tasks:
        self.events = EventListener(self.platform.db)
        await self.events.start()
        self.sched = SimpleNamespace(
            platform=self.platform,
            events=self.events,
            leadership=SimpleNamespace(is_leader=self.leader),
            clock=WallClock(),
            tasks=[],
        )
        add_webhook_tasks(self.sched)
        for t in self.sched.tasks:
            t.start()
        return self

    async def stop(self) -> None:
        for t in self.sched.tasks:
            await t.stop()
        assert self.events is not None
        await self.events.stop()


@pytest.fixture
def fast_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILN_WEBHOOK_INTERVAL", "0.2")
    monkeypatch.setenv("KILN_WEBHOOK_BACKOFF", "0.2")
    monkeypatch.setenv("KILN_WEBHOOK_TIMEOUT", "1")


@pytest.fixture
async def tasks(platform: Platform, fast_webhooks: None) -> AsyncIterator[Tasks]:
    t = await Tasks(platform).start()
    yield t
    await t.stop()


async def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Wait until ``check()`` (sync or async) returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)
