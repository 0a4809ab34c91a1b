"""Everything that is not an IDE upgrade reaches aiohttp as if the front were not there."""

from __future__ import annotations

import asyncio
import hashlib
import os

import aiohttp

from .conftest import Gateway, raw_exchange, read_response, upgrade_request


async def test_normal_routes(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/hello") as resp:
            assert resp.status == 200
            assert (await resp.json())["hello"] == "world"
        async with http.get(f"{gateway.url}/nowhere") as resp:
            assert resp.status == 404
        # /ide/ paths that are not websocket upgrades also go to aiohttp
        async with http.get(f"{gateway.url}/ide/ok/files") as resp:
            assert resp.status == 404
        async with http.get(f"{gateway.url}/ide/ok/ws", headers={"Authorization": "x"}) as resp:
            assert resp.status == 400
            assert "websocket" in (await resp.json())["error"]
    assert gateway.server.relay_count == 0


async def test_keep_alive_reuses_one_connection(gateway: Gateway) -> None:
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        ports = set()
        for _ in range(5):
            async with http.get(f"{gateway.url}/hello") as resp:
                assert resp.status == 200
                ports.add((await resp.json())["peer_port"])
        async with http.post(f"{gateway.url}/upload", data=b"abc") as resp:
            assert (await resp.json())["size"] == 3
        async with http.get(f"{gateway.url}/hello") as resp:
            ports.add((await resp.json())["peer_port"])
    assert len(ports) == 1


async def test_pipelined_requests(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    one = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"0123456789" * 100
    post = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    writer.write(one + post + one)
    first = await read_response(reader)
    second = await read_response(reader)
    third = await read_response(reader)
    writer.close()
    assert first.status == third.status == 200
    assert second.json()["size"] == 1000


async def test_request_in_tiny_pieces(gateway: Gateway) -> None:
    """A head trickling in one byte at a time is still handed over whole."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    for byte in b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n":
        writer.write(bytes([byte]))
        await writer.drain()
    resp = await read_response(reader)
    assert resp.status == 200
    # an /ide/ prefix that turns out to be another path also works piecewise
    for byte in b"GET /ide/ok/files HTTP/1.1\r\nHost: x\r\n\r\n":
        writer.write(bytes([byte]))
        await writer.drain()
    resp = await read_response(reader)
    assert resp.status == 404
    writer.close()


async def test_large_post_body(gateway: Gateway) -> None:
    body = os.urandom(8 * 1024 * 1024)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway.url}/upload", data=body) as resp:
            result = await resp.json()
    assert result == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


async def test_aiohttp_websocket_route(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(
            f"{gateway.ws_url}/graphql", protocols=("graphql-transport-ws",)
        ) as ws:
            assert ws.protocol == "graphql-transport-ws"
            await ws.send_json({"type": "connection_init"})
            assert (await ws.receive_json())["type"] == "connection_ack"
            for i in range(50):
                await ws.send_json({"type": "subscribe", "id": str(i)})
            for i in range(50):
                assert (await ws.receive_json())["id"] == str(i)
            big = "y" * 1_000_000
            await ws.send_json({"type": "subscribe", "id": big})
            assert (await ws.receive_json(timeout=10))["id"] == big


async def test_ide_upgrade_after_keep_alive_uses_fallback(gateway: Gateway) -> None:
    """An upgrade on a connection aiohttp already owns goes through ide_ws_fallback."""
    from .conftest import read_ws_frame, ws_frame

    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader)).status == 200
    writer.write(upgrade_request("/ide/ok-fallback/ws", port=gateway.port))
    resp = await read_response(reader)
    assert resp.status == 101
    assert "sec-websocket-extensions" not in resp.headers
    writer.write(ws_frame(0x1, b"through aiohttp"))
    assert await read_ws_frame(reader) == (0x1, b"through aiohttp")
    writer.write(ws_frame(0x1, b"headers"))
    opcode, payload = await read_ws_frame(reader)
    seen = dict((k.lower(), v) for k, v in __import__("json").loads(payload)["headers"])
    assert "authorization" not in seen and "cookie" not in seen
    writer.write(ws_frame(0x8, b"\x03\xe8bye"))
    opcode, payload = await read_ws_frame(reader)
    assert opcode == 0x8 and payload[:2] == b"\x03\xe8"
    writer.close()
    assert gateway.server.relay_count == 0
    assert await asyncio.wait_for(gateway.dev.closes.get(), 5) == 1000


async def test_rejection_is_json_with_connection_close(gateway: Gateway) -> None:
    resp = await raw_exchange(gateway.port, upgrade_request("/ide/ok/ws", auth=None))
    assert resp.status == 401
    assert resp.headers["connection"].lower() == "close"
    assert resp.json() == {"error": "authentication required"}
