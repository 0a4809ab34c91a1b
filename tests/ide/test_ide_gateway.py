"""IDE sessions through the real gateway front: start, proxy, isolation, culling, re-attach."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from ide_broker.broker import Broker
from server.models import IdeSession
from server.services.errors import Forbidden, NotFound
from tests.ide.conftest import Rpc, make_developer, wait_state


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_session_lifecycle_through_the_gateway(gateway, platform, tmp_path) -> None:
    dev = await make_developer(tmp_path)
    actor = dev.tenant.actor("developer")
    session = await gateway.broker.start_session(actor, dev.tenant.project.id)
    again = await gateway.broker.start_session(actor, dev.tenant.project.id)
    assert again.id == session.id  # idempotent
    ready = await wait_state(session.id, ("ready", "failed"))
    assert ready.state == "ready", ready.failure_reason
    secret_cipher = ready.secret
    assert secret_cipher and "kilnide_" not in secret_cipher  # stored encrypted

    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{gateway.url}/ide/{session.id}/ws", headers=_bearer(dev.token))
        rpc = Rpc(ws)
        read = await rpc.call("fs.read", path="models/marts/fct_orders.sql")
        assert "result" in read, read
        content = read["result"]["content"]
        edited = content + "\n-- edited in the IDE\n"
        wrote = await rpc.call(
            "fs.write",
            path="models/marts/fct_orders.sql",
            content=edited,
            version=read["result"]["version"],
        )
        assert "result" in wrote, wrote
        stale = await rpc.call(
            "fs.write",
            path="models/marts/fct_orders.sql",
            content="x",
            version=read["result"]["version"],
        )
        assert "error" in stale
        escape = await rpc.call("fs.read", path="../../../etc/passwd")
        assert "error" in escape
        await ws.close()
        # bytes through the proxy count as activity (reported by the front's ticker)
        for _ in range(50):
            touched = await IdeSession.get(id=session.id)
            if touched.last_activity_at > ready.last_activity_at:
                break
            await asyncio.sleep(0.1)
        assert touched.last_activity_at > ready.last_activity_at

        # direct to the develop server without the secret: refused
        direct = f"http://{ready.endpoint_host}:{ready.endpoint_port}/ws"
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(direct)
        assert err.value.status in (401, 403)

        # another user of another account cannot reach it, nor learn it exists
        other = await make_developer(tmp_path / "other")
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(
                f"{gateway.url}/ide/{session.id}/ws", headers=_bearer(other.token)
            )
        assert err.value.status == 404
        with pytest.raises(NotFound):
            await gateway.broker.get_session(other.tenant.actor("developer"), session.id)
        # no credentials at all
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(f"{gateway.url}/ide/{session.id}/ws")
        assert err.value.status == 401

    # activity moved last_activity_at; then the culler stops it once idle
    await IdeSession.filter(id=session.id).update(
        last_activity_at=datetime.now(UTC) - timedelta(hours=2)
    )
    assert await gateway.broker.cull(datetime.now(UTC), 3600) == 1
    stopped = await wait_state(session.id, ("stopped",))
    assert stopped.endpoint_port is None

    # a new session finds the files as they were left
    await gateway.broker.start_session(actor, dev.tenant.project.id)
    await wait_state(session.id, ("ready",))
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{gateway.url}/ide/{session.id}/ws", headers=_bearer(dev.token))
        back = await Rpc(ws).call("fs.read", path="models/marts/fct_orders.sql")
        assert back["result"]["content"] == edited
        await ws.close()
    await gateway.broker.stop_session(actor, session.id)


async def test_roles_and_reattach_after_restart(gateway, platform, tmp_path) -> None:
    viewer = await make_developer(tmp_path, role="viewer")
    with pytest.raises(Forbidden):
        await gateway.broker.start_session(viewer.tenant.actor("viewer"), viewer.tenant.project.id)

    dev = await make_developer(tmp_path / "d2")
    actor = dev.tenant.actor("developer")
    session = await gateway.broker.start_session(actor, dev.tenant.project.id)
    ready = await wait_state(session.id, ("ready", "failed"))
    assert ready.state == "ready", ready.failure_reason
    # a "restarted" process: a new broker finds the live server and keeps it
    fresh = Broker(platform)
    counts = await fresh.reattach()
    assert counts["kept"] >= 1
    assert (await IdeSession.get(id=session.id)).state == "ready"
    # a server that died while nobody watched is marked stopped, not left ready
    pid = ready.spawner_state["pid"]
    import os
    import signal

    os.killpg(pid, signal.SIGKILL)
    import asyncio

    await asyncio.sleep(0.5)
    counts = await Broker(platform).reattach()
    assert (await IdeSession.get(id=session.id)).state == "stopped"


async def test_preview_values_are_never_persisted(gateway, platform, tmp_path) -> None:
    dev = await make_developer(tmp_path)
    actor = dev.tenant.actor("developer")
    session = await gateway.broker.start_session(actor, dev.tenant.project.id)
    ready = await wait_state(session.id, ("ready", "failed"))
    assert ready.state == "ready", ready.failure_reason
    # the value exists only in the result (upper-cased by the warehouse), never in the query
    seed = "zq" + hashlib.sha256(str(session.id).encode()).hexdigest()[:16]
    marker = seed.upper()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{gateway.url}/ide/{session.id}/ws", headers=_bearer(dev.token))
        rpc = Rpc(ws)
        res = await rpc.call(
            "dbt.preview", sql=f"select upper('{seed}') as secret_value, 42 as n", limit=5
        )
        assert "result" in res, res
        assert res["result"]["rows"][0][0] == marker
        await ws.close()
    await gateway.broker.stop_session(actor, session.id)
    # scan every text column of every table, and the object store
    async with platform.db.acquire() as conn:
        cols = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'jsonb')"
        )
        for c in cols:
            hit = await conn.fetchval(
                f'SELECT count(*) FROM "{c["table_name"]}"'
                f' WHERE "{c["column_name"]}"::text LIKE $1',
                f"%{marker}%",
            )
            assert hit == 0, (c["table_name"], c["column_name"])
    async for obj in platform.store.list(""):
        assert marker.encode() not in await platform.store.read(obj.key)
    # nor in any file Kiln or the develop server wrote: logs, workspace, target/
    for path in platform.settings.data_dir.rglob("*"):
        if path.is_file() and "pg" not in path.relative_to(platform.settings.data_dir).parts[:1]:
            assert marker not in path.read_text(errors="replace"), path
