"""Artifact downloads for browsers: the session cookie works, in the run's own account only."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from server.gateway.app import build_app
from server.models import Artifact
from server.services import accounts, auth, runs
from tests.factories import make_tenant


async def test_cookie_and_token_downloads_are_scoped_to_the_run(platform) -> None:
    t = await make_tenant()
    other = await make_tenant()
    run = await runs.trigger_run(t.actor(), t.job.id)
    key = f"artifacts/{t.account.id}/{run.id}/2/run_results.json"
    info = await platform.store.put(key, b'{"results": []}')
    await Artifact.create(
        account_id=t.account.id,
        run_id=run.id,
        step_index=2,
        path="run_results.json",
        size=info.size,
        sha256=info.sha256,
        object_key=key,
    )
    # the user is also a member of a second account: the run's account is chosen
    await accounts.add_member(other.account, t.user, "viewer")
    mine = await auth.login(t.user.email, "password-123")
    theirs = await auth.login(other.user.email, "password-123")
    client = TestClient(TestServer(build_app(platform)))
    await client.start_server()
    try:
        url = f"/api/runs/{run.id}/artifacts/run_results.json?step=2"
        r = await client.get(url, cookies={"kiln_session": mine.secret})
        assert r.status == 200 and await r.read() == b'{"results": []}'
        r = await client.get(url, cookies={"kiln_session": theirs.secret})
        assert r.status == 404
        r = await client.get(url, headers={"Authorization": f"Bearer {other.token}"})
        assert r.status == 404
        r = await client.get(url, headers={"Authorization": f"Token {t.token}"})
        assert r.status == 200
        r = await client.get(url)
        assert r.status == 401
    finally:
        await client.close()
