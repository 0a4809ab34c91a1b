"""ide_ws_fallback: the frame-by-frame path through aiohttp, served without the front."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp import web
from websockets.asyncio.client import connect

from .conftest import TOKEN, Develop, Gateway, free_port, make_resolver, raw_exchange

AUTH = {"Authorization": TOKEN}


@pytest.fixture
async def plain(dev: Develop) -> AsyncIterator[Gateway]:
    """The gateway app on a plain aiohttp TCPSite: every IDE upgrade takes the fallback."""
    gw = Gateway(port=0, server=None, dev=dev)  # type: ignore[arg-type]
    app = web.Application()
    resolver = make_resolver(gw, free_port())
    app.router.add_get("/ide/{session}/ws", ide_ws_fallback_for_tests(resolver))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gw.port = runner.addresses[0][1]
    try:
        yield gw
    finally:
        await runner.cleanup()


def ide_ws_fallback_for_tests(resolver: Any) -> Any:
    from server.gateway.ide_proxy import ide_ws_fallback

    return ide_ws_fallback(resolver, activity_interval=0.2)


async def test_fallback_relays_messages(plain: Gateway) -> None:
    async with connect(
        f"{plain.ws_url}/ide/ok/ws",
        additional_headers={**AUTH, "Cookie": "a=b", "X-Custom": "kept"},
        subprotocols=["chat"],
        max_size=None,
    ) as ws:
        assert ws.subprotocol == "chat"
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await ws.send("text")
        assert await ws.recv() == "text"
        big = os.urandom(5 * 1024 * 1024)
        await ws.send(big)
        assert await ws.recv() == big
        for i in range(300):
            await ws.send(str(i))
        for i in range(300):
            assert await ws.recv() == str(i)
        await ws.send("headers")
        report = json.loads(await ws.recv())
        seen = {k.lower(): v for k, v in report["headers"]}
        assert "authorization" not in seen and "cookie" not in seen
        assert seen["x-kiln-develop-secret"] == "s3cret-token"
        assert seen["x-custom"] == "kept"
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert report["compress"] == 0
        assert report["path"] == "/ws"
        await ws.close(code=1000)
    assert await asyncio.wait_for(plain.dev.closes.get(), 5) == 1000
    await asyncio.sleep(0.5)
    assert sum(n for _, n in plain.activity) >= len(big) * 2


async def test_fallback_rejections_and_errors(plain: Gateway) -> None:
    from .conftest import upgrade_request

    for path, auth, status in [
        ("/ide/ok/ws", None, 401),
        ("/ide/forbidden/ws", TOKEN, 403),
        ("/ide/nosuch/ws", TOKEN, 404),
        ("/ide/notready/ws", TOKEN, 409),
        ("/ide/boom/ws", TOKEN, 500),
        ("/ide/down/ws", TOKEN, 502),
        ("/ide/wrongsecret/ws", TOKEN, 502),
    ]:
        resp = await raw_exchange(plain.port, upgrade_request(path, auth=auth))
        assert resp.status == status, path
        assert "error" in resp.json()
        assert resp.headers["connection"] == "close"


async def test_fallback_upstream_close_and_death(plain: Gateway) -> None:
    async with connect(f"{plain.ws_url}/ide/ok/ws", additional_headers=AUTH) as ws:
        await ws.send("close:4003:stopped")
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4003 and ws.close_reason == "stopped"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{plain.ws_url}/ide/ok/ws", headers=AUTH) as ws2:
            await ws2.send_str("die")
            msg = await ws2.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert msg.data == 1011
