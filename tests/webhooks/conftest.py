"""The webhook tasks without a full scheduler (the receiver lives in ``tests/rest/conftest``).

:class:`Tasks` runs the two webhook tasks exactly as ``build_scheduler``
registers them, on a private LISTEN connection, with short intervals and
backoff.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from server.clock import WallClock
from server.events import EventListener
from server.platform import Platform
from server.webhooks.tasks import add_webhook_tasks
from tests.rest.conftest import (  # noqa: F401 - fixtures shared with the REST tests
    Received,
    Receiver,
    eventually,
    gateway,
    receiver,
)


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
