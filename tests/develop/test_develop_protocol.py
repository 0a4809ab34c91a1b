"""Startup, health, websocket auth and the JSON-RPC envelope."""

from __future__ import annotations

import json
import os
import subprocess

import aiohttp
import pytest

from .helpers import PYTHON, REPO_ROOT, SECRET, DevServer, Project, RpcClient, auth_headers


async def test_healthz_needs_no_auth(server: DevServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"ok": True}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Kiln-Develop-Secret": "wrong"}, 403),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"Authorization": f"Basic {SECRET}"}, 401),
        ({"X-Kiln-Develop-Secret": SECRET[:-1]}, 403),
    ],
)
async def test_websocket_refused_without_the_secret(
    server: DevServer, headers: dict[str, str], status: int
) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{server.url}/ws", headers=headers)
    assert info.value.status == status


@pytest.mark.parametrize(
    "headers", [auth_headers(), {"Authorization": f"Bearer {SECRET}"}]
)
async def test_websocket_accepts_the_secret_without_compression(
    server: DevServer, headers: dict[str, str]
) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{server.url}/ws", headers=headers, compress=15)
        assert ws.compress == 0  # the server declined permessage-deflate
        rpc = RpcClient(ws)
        info = await rpc.call("session.info")
        await rpc.close()
    assert info["projectSubdir"] == "analytics"
    assert info["branch"] == "main"
    assert info["dbtVersion"].startswith("1.11")
    assert info["manifest"]["state"] in {"starting", "parsing", "ready", "stale"}


def test_refuses_to_start_without_the_secret(project: Project) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KILN_DEVELOP_SECRET"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    proc = subprocess.run(
        [PYTHON, "-c", "from ide_broker.develop.server import main; raise SystemExit(main())",
         "--workspace", str(project.workspace), "--profiles-dir", str(project.profiles)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "KILN_DEVELOP_SECRET" in lines[0], proc.stderr


async def _raw(server: DevServer, text: str) -> object:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{server.url}/ws", headers=auth_headers())
        await ws.send_str(text)
        msg = await ws.receive(timeout=30)
        await ws.close()
    return json.loads(msg.data)


async def test_parse_error_and_invalid_request(server: DevServer) -> None:
    reply = await _raw(server, "{not json")
    assert reply["error"]["code"] == -32700 and reply["id"] is None
    reply = await _raw(server, json.dumps({"jsonrpc": "1.0", "id": 1, "method": "fs.tree"}))
    assert reply["error"]["code"] == -32600
    reply = await _raw(server, json.dumps({"jsonrpc": "2.0", "id": 2, "method": 5}))
    assert reply["error"]["code"] == -32600 and reply["id"] == 2
    reply = await _raw(server, "[]")
    assert reply["error"]["code"] == -32600


async def test_method_not_found_and_invalid_params(client: RpcClient) -> None:
    fut = await client.send("no.such")
    assert (await fut)["error"]["code"] == -32601
    fut = await client.send("fs.read", {"path": 42})
    err = (await fut)["error"]
    assert err["code"] == -32602 and "'path'" in err["message"] and "string" in err["message"]
    fut = await client.send("fs.read", {})
    err = (await fut)["error"]
    assert err["code"] == -32602 and "'path' is required" in err["message"]
    fut = await client.send("fs.read", {"path": "README.md", "bogus": 1})
    err = (await fut)["error"]
    assert err["code"] == -32602 and "'bogus'" in err["message"]


async def test_positional_params_are_refused(server: DevServer) -> None:
    reply = await _raw(server, json.dumps(
        {"jsonrpc": "2.0", "id": 9, "method": "fs.read", "params": ["README.md"]}
    ))
    assert reply["error"]["code"] == -32602 and "object" in reply["error"]["message"]


async def test_batch_is_answered_as_an_array(server: DevServer) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "fs.read", "params": {"path": "README.md"}},
        {"jsonrpc": "2.0", "method": "session.info"},  # a notification: no reply
        {"jsonrpc": "2.0", "id": "b", "method": "nope"},
    ]
    reply = await _raw(server, json.dumps(batch))
    assert isinstance(reply, list) and len(reply) == 2
    by_id = {r["id"]: r for r in reply}
    assert by_id["a"]["result"]["content"].startswith("# workspace")
    assert by_id["b"]["error"]["code"] == -32601
