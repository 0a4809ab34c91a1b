"""An in-process gateway (``build_app``: REST routes included) and helpers to call it.

Runs are created through the services and moved through the real state
machine (no dbt here); :func:`finish_run` gives one steps, log lines and
artifacts the way a worker would leave them. The end-to-end flow with real
dbt runs against ``kiln up`` (``test_e2e.py``). The webhook receiver records
what it is sent and answers with programmed statuses or delays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web

from server.gateway.app import build_app
from server.gateway.rest.openapi import build as build_openapi
from server.logs import ingest
from server.models import Run, RunStatus
from server.platform import Platform
from server.runs import state
from server.services import artifacts, runs
from tests.conftest import free_port
from tests.factories import Tenant, make_tenant


@dataclasses.dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def data(self) -> Any:
        return self.json["data"]


class Api:
    """A small client of one gateway; every JSON answer is checked against the OpenAPI."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        body: Any = None,
        raw: bytes | None = None,
        scheme: str = "Token",
        params: Any = None,
    ) -> Response:
        headers = {"Authorization": f"{scheme} {token}"} if token else {}
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(
            method, self.url + path, headers=headers, data=data, params=params
        ) as resp:
            out = Response(resp.status, dict(resp.headers), await resp.read())
        check_openapi(method, path, out)
        return out

    async def get(self, path: str, token: str | None = None, **kw: Any) -> Response:
        return await self.call("GET", path, token, **kw)

    async def post(self, path: str, token: str | None = None, **kw: Any) -> Response:
        return await self.call("POST", path, token, **kw)

    async def delete(self, path: str, token: str | None = None, **kw: Any) -> Response:
        return await self.call("DELETE", path, token, **kw)


SPEC = build_openapi()


def _operation(method: str, path: str) -> dict[str, Any] | None:
    """The OpenAPI operation of a concrete /api/v2 path, if the description has one."""
    path = path.split("?", 1)[0]
    if not path.startswith("/api/v2/accounts"):
        return None
    parts = path.rstrip("/").split("/")
    for template, item in SPEC["paths"].items():
        tparts = template.rstrip("/").split("/")
        if template.endswith("{path}") and len(parts) >= len(tparts):
            parts_cmp = parts[: len(tparts) - 1]
            tcmp = tparts[:-1]
        elif len(tparts) == len(parts):
            parts_cmp, tcmp = parts, tparts
        else:
            continue
        if all(t.startswith("{") or t == p for t, p in zip(tcmp, parts_cmp, strict=True)):
            return item.get(method.lower())
    return None


def check_openapi(method: str, path: str, resp: Response) -> None:
    """A real answer must match the OpenAPI description of its operation and status."""
    op = _operation(method, path)
    if op is None or "application/json" not in resp.headers.get("Content-Type", ""):
        return
    spec = op["responses"].get(str(resp.status))
    assert spec is not None, f"{method} {path}: status {resp.status} is not described"
    media = spec["content"].get("application/json")
    if media is None:
        return
    schema = {**media["schema"], "components": JSON_COMPONENTS}
    jsonschema.validate(resp.json, schema, cls=jsonschema.Draft7Validator)


def to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema (``nullable`` becomes ``anyOf [..., null]``)."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


JSON_COMPONENTS = to_json_schema(SPEC["components"])


@dataclasses.dataclass
class Gateway:
    url: str
    platform: Platform


async def start_gateway(platform: Platform) -> tuple[Gateway, web.AppRunner]:
    app = build_app(platform)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return Gateway(f"http://127.0.0.1:{port}", platform), runner


@pytest.fixture(scope="session")
async def gateway(platform: Platform) -> AsyncIterator[Gateway]:
    gw, runner = await start_gateway(platform)
    yield gw
    await runner.cleanup()


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(gateway.url, session)


@pytest.fixture
async def tenant(platform: Platform) -> Tenant:
    return await make_tenant()


def base(t: Tenant) -> str:
    return f"/api/v2/accounts/{t.account.id}"


async def finish_run(
    platform: Platform,
    run: Run,
    status: RunStatus = RunStatus.SUCCESS,
    *,
    files: dict[str, bytes] | None = None,
    message: str | None = None,
) -> Run:
    """Take a queued run to ``status`` as a worker would: two steps, logs, artifacts."""
    account = run.account_id  # type: ignore[attr-defined]
    async with platform.db.acquire() as conn:
        await state.transition(conn, run.id, RunStatus.STARTING)
        await state.transition(conn, run.id, RunStatus.RUNNING)
        step_status = int(status if status != RunStatus.CANCELLED else RunStatus.SUCCESS)
        await state.steps_upsert(
            conn,
            run.id,
            account,
            [
                {"index": 1, "name": "Clone", "kind": "clone", "status": 10},
                {"index": 2, "name": "Invoke dbt with `dbt build`", "kind": "dbt",
                 "command": "dbt build", "status": step_status},
            ],
        )
        now = datetime.now(UTC).isoformat()
        await ingest.append(
            conn,
            run.id,
            account,
            ingest.parse_batch(
                [
                    {"seq": 1, "step": 1, "ts": now, "message": "Cloned the project"},
                    {"seq": 2, "step": 2, "ts": now, "message": "Running with dbt=1.11"},
                    {"seq": 3, "step": 2, "ts": now, "message": "Completed successfully"},
                ]
            ),
        )
        for path, data in (files or {}).items():
            await artifacts.save(
                conn, platform.store, account_id=account, run_id=run.id, step_index=2,
                path=path, data=data,
            )
        if status != RunStatus.RUNNING:
            await state.transition(conn, run.id, status, message=message)
    return await Run.get(id=run.id)


async def queued_run(t: Tenant, **kw: Any) -> Run:
    return await runs.trigger_run(t.actor(), t.job.id, **kw)


def write_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (PEM cert, PEM key)."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# ------------------------------------------------------------ webhook receiver


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    requests: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    answers: dict[str, list[int | float]] = field(default_factory=lambda: defaultdict(list))
    # called before answering a request on that path (e.g. to look at the server meanwhile)
    on_receive: dict[str, Callable[[Received], Awaitable[None]]] = field(default_factory=dict)

    def hook(self, name: str) -> str:
        return f"{self.url}/hook/{name}"

    def got(self, name: str) -> list[Received]:
        return self.requests[name]

    def program(self, name: str, *answers: int | float) -> None:
        """Answer the next requests with these statuses (an int) or after a delay (a float)."""
        self.answers[name].extend(answers)


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    rec = Receiver(f"http://127.0.0.1:{port}")

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        answer = rec.answers[name].pop(0) if rec.answers[name] else 200
        if isinstance(answer, float):
            await asyncio.sleep(answer)
            answer = 200
        got = Received(dict(request.headers), body)
        if name in rec.on_receive:
            await rec.on_receive[name](got)
        rec.requests[name].append(got)
        return web.Response(status=int(answer), text="ok")

    app = web.Application()
    app.router.add_post("/hook/{name}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield rec
    await runner.cleanup()


async def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Wait until ``check()`` (sync or async) returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)
