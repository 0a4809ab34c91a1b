"""The raw-byte relay of /ide/<session>/ws to the develop server."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import struct
import time
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect

from .conftest import (
    TOKEN,
    Gateway,
    client_frame_size,
    raw_exchange,
    read_response,
    read_ws_frame,
    running_develop,
    running_gateway,
    server_frame_size,
    upgrade_request,
    ws_frame,
)

AUTH = {"Authorization": TOKEN}


def seen_headers(report: str | bytes) -> dict[str, str]:
    return {k.lower(): v for k, v in json.loads(report)["headers"]}


async def test_text_and_binary_with_websockets_client(gateway: Gateway) -> None:
    async with connect(f"{gateway.ws_url}/ide/ok/ws", additional_headers=AUTH) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00\x01\xff")
        assert await ws.recv() == b"\x00\x01\xff"
        await ws.send("é✓ unicode")
        assert await ws.recv() == "é✓ unicode"
        assert gateway.server.relay_count == 1
    assert gateway.resolved[-1][0] == "ok"


async def test_text_and_binary_with_aiohttp_client(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(
            f"{gateway.ws_url}/ide/ok/ws", headers=AUTH, protocols=("jsonrpc",)
        ) as ws:
            assert ws.protocol == "jsonrpc"
            await ws.send_str("text")
            assert await ws.receive_str() == "text"
            await ws.send_bytes(b"bin")
            assert await ws.receive_bytes() == b"bin"
            await ws.ping(b"p")  # pings pass through (the develop server answers)
            await ws.send_str("after ping")
            assert await ws.receive_str() == "after ping"


async def test_cookie_auth_session_id_decoding_and_query(gateway: Gateway) -> None:
    url = f"{gateway.ws_url}/ide/ok%2Dcookie/ws?token=leak"
    async with connect(url, additional_headers={"Cookie": "kiln_session=good"}) as ws:
        await ws.send("headers")
        report = json.loads(await ws.recv())
    assert gateway.resolved[-1][0] == "ok-cookie"
    assert gateway.resolved[-1][1].path == "/ide/ok%2Dcookie/ws?token=leak"
    assert report["path"] == "/ws"  # the query string is dropped


async def test_large_messages_both_ways(gateway: Gateway) -> None:
    async with connect(f"{gateway.ws_url}/ide/ok/ws", additional_headers=AUTH, max_size=None) as ws:
        payloads = [os.urandom(3 * 1024 * 1024), os.urandom(5 * 1024 * 1024 + 7)]
        for p in payloads:
            await ws.send(p)
        for p in payloads:
            assert await ws.recv() == p
        text = "x" * (4 * 1024 * 1024)
        await ws.send(text)
        assert await ws.recv() == text


async def test_many_messages_in_order(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{gateway.ws_url}/ide/ok/ws", headers=AUTH) as ws:

            async def sender() -> None:
                for i in range(5000):
                    await ws.send_bytes(struct.pack(">I", i) + os.urandom(i % 300))

            task = asyncio.ensure_future(sender())
            for i in range(5000):
                data = await ws.receive_bytes(timeout=10)
                assert struct.unpack(">I", data[:4])[0] == i
                assert len(data) == 4 + i % 300
            await task
            # develop server to client: a stream of 2,000 numbered 10 KB messages
            await ws.send_str("stream:2000:10000")
            for i in range(2000):
                data = await ws.receive_bytes(timeout=10)
                assert struct.unpack(">I", data[:4])[0] == i and len(data) == 10004


async def test_backpressure_bounds_the_gateway_buffers(gateway: Gateway) -> None:
    """A client that stops reading makes the relay stop reading the develop server."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port, limit=2**20)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    writer.write(upgrade_request("/ide/ok/ws", port=gateway.port))
    assert (await read_response(reader)).status == 101
    writer.write(ws_frame(0x1, b"stream:2000:50000"))  # 100 MB
    writer.transport.pause_reading()
    await asyncio.sleep(1.0)
    (front,) = gateway.server._hub.relays
    assert front._transport is not None
    buffered = front._transport.get_write_buffer_size()
    assert buffered < 1024 * 1024, buffered
    writer.transport.resume_reading()
    for i in range(2000):
        opcode, payload = await asyncio.wait_for(read_ws_frame(reader), 10)
        assert opcode == 0x2 and struct.unpack(">I", payload[:4])[0] == i
    writer.close()


async def test_rejections(gateway: Gateway) -> None:
    cases = [
        ("/ide/ok/ws", None, 401, "authentication required"),
        ("/ide/forbidden/ws", TOKEN, 403, "this IDE session belongs to someone else"),
        ("/ide/nosuch/ws", TOKEN, 404, "no IDE session nosuch"),
        ("/ide/notready/ws", TOKEN, 409, "the IDE session is still starting"),
        ("/ide/boom/ws", TOKEN, 500, "internal error while looking up the IDE session"),
    ]
    for path, auth, status, reason in cases:
        resp = await raw_exchange(gateway.port, upgrade_request(path, auth=auth))
        assert (resp.status, resp.json()) == (status, {"error": reason}), path
        assert resp.headers["connection"] == "close"
        assert resp.headers["content-type"].startswith("application/json")
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(f"{gateway.ws_url}/ide/forbidden/ws", additional_headers=AUTH):
            pass
    assert info.value.response.status_code == 403


async def test_develop_server_down_is_502(gateway: Gateway) -> None:
    resp = await raw_exchange(gateway.port, upgrade_request("/ide/down/ws"))
    assert resp.status == 502
    assert "unreachable" in resp.json()["error"]
    assert "down" in resp.json()["error"]


async def test_develop_server_refusing_upgrade_is_502(gateway: Gateway) -> None:
    resp = await raw_exchange(gateway.port, upgrade_request("/ide/wrongsecret/ws"))
    assert resp.status == 502
    assert "refused the websocket upgrade" in resp.json()["error"]
    assert "403" in resp.json()["error"]


async def test_resolver_timeout_is_504(dev: Any) -> None:
    async with running_gateway(dev, resolve_timeout=0.3) as gw:
        resp = await raw_exchange(gw.port, upgrade_request("/ide/slow/ws"))
    assert resp.status == 504


async def test_upstream_close_frame_reaches_client(gateway: Gateway) -> None:
    async with connect(f"{gateway.ws_url}/ide/ok/ws", additional_headers=AUTH) as ws:
        await ws.send("close:4001:session stopped")
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4001
        assert ws.close_reason == "session stopped"
    await asyncio.sleep(0.05)
    assert gateway.server.relay_count == 0


async def test_upstream_dying_closes_client(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{gateway.ws_url}/ide/ok/ws", headers=AUTH) as ws:
            await ws.send_str("die")
            msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE)
    await asyncio.sleep(0.05)
    assert gateway.server.relay_count == 0


async def test_client_close_reaches_upstream(gateway: Gateway) -> None:
    async with connect(f"{gateway.ws_url}/ide/ok/ws", additional_headers=AUTH) as ws:
        await ws.send("hi")
        await ws.recv()
        await ws.close(code=1000, reason="bye")
    assert await asyncio.wait_for(gateway.dev.closes.get(), 5) == 1000


async def test_client_vanishing_closes_upstream(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(upgrade_request("/ide/ok/ws", port=gateway.port))
    assert (await read_response(reader)).status == 101
    writer.write(ws_frame(0x1, b"ping"))
    assert await read_ws_frame(reader) == (0x1, b"ping")
    writer.transport.abort()
    assert await asyncio.wait_for(gateway.dev.closes.get(), 5) is not None
    await asyncio.sleep(0.05)
    assert gateway.server.relay_count == 0


async def test_half_close_is_passed_on(gateway: Gateway) -> None:
    """The client's FIN reaches the develop server; its close comes back; then EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(upgrade_request("/ide/ok/ws", port=gateway.port))
    assert (await read_response(reader)).status == 101
    writer.write(ws_frame(0x1, b"last words"))
    writer.write_eof()
    assert await read_ws_frame(reader) == (0x1, b"last words")
    rest = await asyncio.wait_for(reader.read(), 5)  # EOF arrives: the relay closed
    assert rest == b"" or rest[0] & 0x0F == 0x8
    await asyncio.wait_for(gateway.dev.closes.get(), 5)
    writer.close()


async def test_oversize_head_is_431(gateway: Gateway) -> None:
    extra = "".join(f"X-Filler-{i}: {'a' * 200}\r\n" for i in range(100))
    resp = await raw_exchange(gateway.port, upgrade_request("/ide/ok/ws", extra=extra))
    assert resp.status == 431
    # one endless header line, never finished
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET /ide/ok/ws HTTP/1.1\r\nX-Long: " + b"a" * 20000)
    resp = await asyncio.wait_for(read_response(reader), 5)
    assert resp.status == 431 and "error" in resp.json()
    writer.close()


async def test_malformed_heads_are_400(gateway: Gateway) -> None:
    bad = [
        upgrade_request("/ide/ok/ws", extra=" folded: continuation\r\n"),
        upgrade_request("/ide/ok/ws", extra="Bad Header: x\r\n"),
        upgrade_request("/ide/ok/ws", extra="Content-Length: 5\r\n"),
        upgrade_request("/ide/ok/ws", extra="Host: second\r\n"),
    ]
    for data in bad:
        resp = await raw_exchange(gateway.port, data)
        assert resp.status == 400, data


async def test_slow_head_is_closed(gateway: Gateway) -> None:
    """head_timeout is 1 s in the fixture: a trickling /ide/ head gets the connection closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    started = time.monotonic()
    writer.write(b"GET /ide/ok/ws HTTP/1.1\r\n")
    for _ in range(30):
        writer.write(b"X: y\r\n")
        await asyncio.sleep(0.1)
        if writer.is_closing() or reader.at_eof():
            break
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert 0.9 < time.monotonic() - started < 3
    writer.close()
    # a connection that sends nothing at all is closed as well
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_credentials_stripped_secret_added_headers_passed(gateway: Gateway) -> None:
    headers = {
        **AUTH,
        "Cookie": "kiln_session=good; other=1",
        "Proxy-Authorization": "Basic abc",
        "X-Kiln-Develop-Secret": "forged",
        "X-Custom": "kept",
        "X-Forwarded-For": "10.9.9.9",
        "Origin": "http://127.0.0.1:1234",
    }
    async with connect(
        f"{gateway.ws_url}/ide/ok/ws", additional_headers=headers, subprotocols=["jsonrpc"]
    ) as ws:
        assert ws.subprotocol == "jsonrpc"
        await ws.send("headers")
        report = json.loads(await ws.recv())
    seen = {k.lower(): v for k, v in report["headers"]}
    names = [k.lower() for k, _ in report["headers"]]
    assert "cookie" not in seen and "authorization" not in seen
    assert "proxy-authorization" not in seen
    assert names.count("x-kiln-develop-secret") == 1
    assert seen["x-kiln-develop-secret"] == "s3cret-token"
    assert seen["host"] == f"127.0.0.1:{gateway.dev.port}"
    assert seen["x-custom"] == "kept"
    assert seen["origin"] == "http://127.0.0.1:1234"
    assert seen["x-forwarded-for"] == "10.9.9.9, 127.0.0.1"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{gateway.port}"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["sec-websocket-protocol"] == "jsonrpc"
    assert seen["sec-websocket-version"] == "13"
    assert "sec-websocket-key" in seen
    assert seen["connection"] == "Upgrade" and seen["upgrade"] == "websocket"
    # the resolver saw the credentials
    resolved = gateway.resolved[-1][1]
    assert resolved.headers["Cookie"] == "kiln_session=good; other=1"
    assert resolved.headers["Authorization"] == TOKEN
    assert resolved.peer is not None and resolved.peer[0] == "127.0.0.1"
    assert resolved.method == "GET"


async def test_compression_is_never_negotiated(gateway: Gateway) -> None:
    # websockets offers permessage-deflate by default
    async with connect(f"{gateway.ws_url}/ide/ok/ws", additional_headers=AUTH) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await ws.send("headers")
        report = json.loads(await ws.recv())
    assert "sec-websocket-extensions" not in seen_headers(json.dumps(report))
    assert report["compress"] == 0
    # aiohttp offers it too; other extensions would pass through
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{gateway.ws_url}/ide/ok/ws", headers=AUTH) as ws2:
            assert ws2.compress == 0
    resp = await raw_exchange(
        gateway.port,
        upgrade_request(
            "/ide/notready/ws",
            extra="Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, "
            "x-other; a=1\r\n",
        ),
    )
    assert resp.status == 409
    from server.gateway.ide_proxy import _strip_deflate

    assert _strip_deflate(["permessage-deflate; client_max_window_bits, x-other; a=1"]) == (
        "x-other; a=1"
    )


async def test_activity_counts_bytes_and_is_throttled(gateway: Gateway) -> None:
    """The fixture's activity_interval is 0.2 s."""
    sizes = [10, 200, 70000, 5]
    async with connect(
        f"{gateway.ws_url}/ide/ok/ws", additional_headers=AUTH, compression=None
    ) as ws:
        expected = 0
        for _round in range(3):
            for n in sizes:
                await ws.send(b"a" * n)
                await ws.recv()
                expected += client_frame_size(n) + server_frame_size(n)
            await asyncio.sleep(0.15)
        await asyncio.sleep(0.5)
        assert sum(n for _, n in gateway.activity) == expected
        calls = len(gateway.activity)
        await asyncio.sleep(0.5)  # idle: no calls
        assert len(gateway.activity) == calls
    await asyncio.sleep(0.5)
    times = [t for t, _ in gateway.activity]
    assert all(b - a >= 0.19 for a, b in itertools.pairwise(times))
    assert 2 <= len(times) <= 8
    # the close frames are reported after the connection ended
    assert sum(n for _, n in gateway.activity) > expected


async def test_pipelined_bytes_after_the_head_are_relayed(gateway: Gateway) -> None:
    """Bytes sent right behind the upgrade request reach the develop server after it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(upgrade_request("/ide/ok/ws", port=gateway.port) + ws_frame(0x1, b"early"))
    assert (await read_response(reader)).status == 101
    assert await read_ws_frame(reader) == (0x1, b"early")
    writer.close()


async def test_server_close_closes_relays(dev: Any) -> None:
    async with running_gateway(dev) as gw:
        ws = await connect(f"{gw.ws_url}/ide/ok/ws", additional_headers=AUTH)
        await ws.send("x")
        await ws.recv()
        gw.server.close()
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    await asyncio.wait_for(dev.closes.get(), 5)


async def test_many_concurrent_sessions(gateway: Gateway) -> None:
    async def one(i: int) -> None:
        async with connect(f"{gateway.ws_url}/ide/ok{i}/ws", additional_headers=AUTH) as ws:
            for j in range(20):
                await ws.send(f"{i}:{j}")
                assert await ws.recv() == f"{i}:{j}"

    await asyncio.gather(*(one(i) for i in range(50)))


def test_on_uvloop() -> None:
    """The same relay on uvloop (what `kiln gateway` installs), in its own thread."""
    import threading

    uvloop = pytest.importorskip("uvloop")
    errors: list[BaseException] = []

    async def scenario() -> None:
        assert "uvloop" in type(asyncio.get_running_loop()).__module__
        async with running_develop() as dev, running_gateway(dev, head_timeout=0.5) as gw:
            async with connect(
                f"{gw.ws_url}/ide/ok/ws", additional_headers=AUTH, max_size=None
            ) as ws:
                big = os.urandom(6 * 1024 * 1024)
                await ws.send(big)
                assert await ws.recv() == big
                for i in range(500):
                    await ws.send(str(i))
                for i in range(500):
                    assert await ws.recv() == str(i)
                await ws.send("headers")
                seen = seen_headers(await ws.recv())
                assert "authorization" not in seen
            assert await asyncio.wait_for(dev.closes.get(), 5) == 1000
            resp = await raw_exchange(gw.port, upgrade_request("/ide/down/ws"))
            assert resp.status == 502
            resp = await raw_exchange(gw.port, upgrade_request("/ide/forbidden/ws"))
            assert resp.status == 403
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{gw.url}/hello") as r:
                    assert r.status == 200
                async with http.post(f"{gw.url}/upload", data=b"z" * 3_000_000) as r:
                    assert (await r.json())["size"] == 3_000_000
                async with http.ws_connect(f"{gw.ws_url}/graphql") as ws2:
                    await ws2.send_json({"type": "connection_init"})
                    assert (await ws2.receive_json())["type"] == "connection_ack"
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(b"GET /ide/ok/ws HTTP/1.1\r\n")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            # a client that stops reading: the relay's buffer stays bounded
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(upgrade_request("/ide/ok/ws", port=gw.port))
            assert (await read_response(reader)).status == 101
            writer.write(ws_frame(0x1, b"stream:1000:50000"))
            writer.transport.pause_reading()
            await asyncio.sleep(0.5)
            (front,) = gw.server._hub.relays
            assert front._transport.get_write_buffer_size() < 1024 * 1024
            writer.transport.resume_reading()
            for i in range(1000):
                _, payload = await asyncio.wait_for(read_ws_frame(reader), 10)
                assert struct.unpack(">I", payload[:4])[0] == i
            writer.close()

    def run() -> None:
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(scenario())
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    if errors:
        raise errors[0]


def _self_signed(tmp: Any) -> tuple[str, str]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


async def test_tls_front(dev: Any, tmp_path: Any) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)
    async with running_gateway(dev, ssl=server_ctx) as gw:
        url = f"wss://127.0.0.1:{gw.port}/ide/ok/ws"
        async with connect(url, additional_headers=AUTH, ssl=client_ctx, max_size=None) as ws:
            big = os.urandom(4 * 1024 * 1024)
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send("headers")
            seen = seen_headers(await ws.recv())
            assert seen["x-forwarded-proto"] == "https"
            await ws.send("close:4002:done")
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4002
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{gw.port}/hello", ssl=client_ctx) as resp:
                assert resp.status == 200
            async with http.ws_connect(
                f"wss://127.0.0.1:{gw.port}/ide/ok/ws", headers=AUTH, ssl=client_ctx
            ) as ws2:
                await ws2.send_str("tls")
                assert await ws2.receive_str() == "tls"
        await asyncio.sleep(0.1)
        assert gw.server.relay_count == 0


def test_target_validation() -> None:
    from server.gateway.ide_proxy import IdeTarget

    IdeTarget("develop-abc.kiln.svc", 8000, "s3cret", "1")
    IdeTarget("::1", 8000, "s3cret", "1")
    for host, port, secret in [
        ("", 1, "s"),
        ("[::1]", 1, "s"),
        ("evil\r\nX: y", 1, "s"),
        ("h", 0, "s"),
        ("h", 70000, "s"),
        ("h", 1, "with space"),
        ("h", 1, "line\r\nbreak"),
        ("h", 1, ""),
    ]:
        with pytest.raises(ValueError):
            IdeTarget(host, port, secret, "1")
