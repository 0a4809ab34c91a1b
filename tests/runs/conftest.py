"""Run execution fixtures: an in-process API (internal routes) plus the real engine.

Workers are real ``kiln worker run`` subprocesses started by the local
launcher; they run real dbt against DuckDB files in tmp dirs or schemas of the
test PostgreSQL database. The heartbeat interval is short so monitoring tests
finish quickly. ``KILN_WORKER_KEEP=1`` keeps each run's project copy under
``workdir`` so tests can compare artifacts with what dbt wrote.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from server.events import EventListener
from server.gateway.app import PLATFORM
from server.gateway.internal import add_internal_routes
from server.launchers.local import LocalRunLauncher
from server.models import Run, RunStatus
from server.platform import Platform
from server.runs.engine import start_engine
from tests.conftest import free_port
from tests.factories import Tenant, make_tenant

HEARTBEAT = 1.0


@dataclasses.dataclass
class Engine:
    platform: Platform
    launcher: LocalRunLauncher
    url: str
    workdir: Path
    accounts: set[int]

    async def tenant(self, **kw: Any) -> Tenant:
        """A tenant whose runs this engine executes."""
        t = await make_tenant(**kw)
        self.accounts.add(t.account.id)
        return t


@pytest.fixture(scope="session")
async def engine(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Engine]:
    port = free_port()
    settings = platform.settings.with_overrides(port=port, heartbeat_interval=HEARTBEAT)
    p = dataclasses.replace(platform, settings=settings, services={})
    events = EventListener(p.db)  # the process's shared LISTEN connection, as in kiln up
    await events.start()
    p.services["events"] = events
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[PLATFORM] = p
    add_internal_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    workdir = tmp_path_factory.mktemp("kiln-workers")
    launcher = LocalRunLauncher(
        settings,
        extra_env={"KILN_WORKER_KEEP": "1", "KILN_WORKER_WORKDIR": str(workdir)},
        terminate_grace=3.0,
    )
    accounts: set[int] = set()
    stop = await start_engine(
        p, launcher=launcher, poll_interval=2.0, monitor_interval=0.5, accounts=accounts
    )
    yield Engine(p, launcher, f"http://127.0.0.1:{port}", workdir, accounts)
    await stop()
    await runner.cleanup()
    await events.stop()


async def wait_run(run_id: int, timeout: float = 120, until: Any = None) -> Run:
    """Poll until the run is final (or ``until(run)`` holds)."""
    deadline = time.monotonic() + timeout
    while True:
        run = await Run.get(id=run_id)
        if until(run) if until else RunStatus(run.status).is_final:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(
                f"run {run_id} still {RunStatus(run.status).name} after {timeout} s: "
                f"{run.status_message}"
            )
        await asyncio.sleep(0.2)


def write_project(root: Path, files: dict[str, str], name: str = "proj") -> Path:
    """A small dbt project (profile ``kiln_test``) with the given files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dbt_project.yml").write_text(
        f"name: {name}\nversion: '1.0'\nconfig-version: 2\nprofile: kiln_test\n"
    )
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
