"""GraphQL over real HTTP: the gateway app in aiohttp's test server, on the session database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.gateway.app import build_app
from server.ids import to_global_id
from server.models import Run, RunStatus, RunStep
from server.services import accounts
from tests.factories import Tenant, make_tenant


def gid(type_name: str, pk: int) -> str:
    return to_global_id(type_name, pk)


@dataclass
class Api:
    """A client of /graphql; ``call`` returns the decoded response body."""

    client: TestClient

    async def call(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        expect_status: int = 200,
    ) -> dict[str, Any]:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        resp = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=h
        )
        assert resp.status == expect_status, await resp.text()
        return await resp.json()

    async def data(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> Any:
        """The ``data`` of a response that must have no errors."""
        body = await self.call(query, variables, **kw)
        assert not body.get("errors"), body["errors"]
        return body["data"]

    async def error(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> dict:
        """The first GraphQL error of a response that must have one."""
        body = await self.call(query, variables, **kw)
        assert body.get("errors"), body
        return body["errors"][0]

    async def mutate(
        self, query: str, variables: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """The payload of a single-field mutation (no GraphQL errors allowed)."""
        data = await self.data(query, variables, **kw)
        (payload,) = data.values()
        return payload


@pytest.fixture
async def api(platform) -> AsyncIterator[Api]:
    client = TestClient(TestServer(build_app(platform)))
    await client.start_server()
    try:
        yield Api(client)
    finally:
        await client.close()


@pytest.fixture
async def tenant(platform) -> Tenant:
    return await make_tenant()


async def token_for(t: Tenant, role: str) -> str:
    return (await accounts.create_token(t.account, name=f"{role}-token", role=role)).secret


async def add_runs(
    t: Tenant, n: int, *, steps: int = 3, status: int = RunStatus.SUCCESS
) -> list[Run]:
    """``n`` finished runs of the tenant's job, each with ``steps`` steps."""
    runs = []
    for _ in range(n):
        run = await Run.create(
            account_id=t.account.id,
            project_id=t.project.id,
            environment_id=t.environment.id,
            job_id=t.job.id,
            status=status,
            cause="test",
        )
        for i in range(steps):
            await RunStep.create(
                account_id=t.account.id,
                run_id=run.id,
                index=i + 1,
                name=f"dbt step {i + 1}",
                command=f"dbt step {i + 1}",
                status=status,
            )
        runs.append(run)
    return runs
