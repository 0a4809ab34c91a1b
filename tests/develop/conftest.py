"""Fixtures: one develop server (real subprocess) on a built tiny project, shared
by the tests of this directory, and a fresh websocket client per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from .helpers import (
    DevServer,
    Project,
    RpcClient,
    auth_headers,
    dbt_cli,
    make_project,
    start_server,
)


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    proj = make_project(tmp_path_factory.mktemp("develop") / "p")
    built = dbt_cli(proj, "build")  # tables for previews, independent of test order
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return proj


@pytest.fixture(scope="session")
async def server(project: Project) -> AsyncIterator[DevServer]:
    srv = await start_server(project)
    yield srv
    rc = await srv.stop()
    assert rc == 0, srv.stderr
    assert "Traceback" not in srv.stderr, srv.stderr


@pytest.fixture
async def client(server: DevServer) -> AsyncIterator[RpcClient]:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{server.url}/ws", headers=auth_headers())
        rpc = RpcClient(ws)
        yield rpc
        await rpc.close()


@pytest.fixture
def workspace(project: Project) -> Path:
    return project.workspace
