"""Test helpers: a tiny dbt project in a git workspace, the develop server as a
real subprocess, and a JSON-RPC websocket client (aiohttp ws_connect)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
PROJECT_SUBDIR = "analytics"
SECRET = "test-secret-" + "x" * 20

PROJECT_FILES = {
    "README.md": "# workspace for develop server tests\n",
    ".gitignore": "target/\nlogs/\ndbt_packages/\n",
    f"{PROJECT_SUBDIR}/dbt_project.yml": """\
        name: kiln_dev_test
        version: "1.0"
        profile: kiln_dev_test
        seed-paths: ["seeds"]
        model-paths: ["models"]
        """,
    f"{PROJECT_SUBDIR}/seeds/raw_orders.csv": """\
        id,customer,amount,ordered_at
        1,alice,10.50,2024-01-01
        2,bob,20.25,2024-01-02
        3,alice,5.00,2024-01-03
        4,carol,7.75,2024-01-04
        """,
    f"{PROJECT_SUBDIR}/models/stg_orders.sql": """\
        select id, customer, amount, cast(ordered_at as date) as ordered_at
        from {{ ref('raw_orders') }}
        """,
    f"{PROJECT_SUBDIR}/models/customer_totals.sql": """\
        select customer, sum(amount) as total, count(*) as orders
        from {{ ref('stg_orders') }}
        group by customer
        """,
    f"{PROJECT_SUBDIR}/models/schema.yml": """\
        version: 2
        models:
          - name: stg_orders
            columns:
              - name: id
                data_tests: [not_null, unique]
        """,
    # Disabled unless --vars '{kiln_slow: true}': a query that runs for minutes on DuckDB.
    f"{PROJECT_SUBDIR}/models/slow/slow_model.sql": """\
        {{ config(enabled=var('kiln_slow', false), materialized='table') }}
        select count(*) as n
        from range(100000) as a, range(1000000) as b
        where a.range + b.range > -1
        """,
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    ident = ["-c", "user.name=Test Setup", "-c", "user.email=setup@example.com"]
    out = subprocess.run(
        ["git", *ident, *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout


@dataclass
class Project:
    root: Path  # holds workspace/, origin.git, profiles/, warehouse.duckdb
    workspace: Path
    origin: Path
    profiles: Path
    warehouse: Path

    @property
    def project_dir(self) -> Path:
        return self.workspace / PROJECT_SUBDIR


def make_project(root: Path) -> Project:
    """A git workspace with a tiny dbt project, a bare origin and a DuckDB profile."""
    root.mkdir(parents=True, exist_ok=True)
    workspace, origin, profiles = root / "workspace", root / "origin.git", root / "profiles"
    warehouse = root / "warehouse.duckdb"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    workspace.mkdir()
    git(workspace, "init", "-q", "-b", "main")
    for rel, text in PROJECT_FILES.items():
        path = workspace / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    git(workspace, "add", "-A")
    git(workspace, "commit", "-q", "-m", "Initial project")
    git(workspace, "remote", "add", "origin", str(origin))
    git(workspace, "push", "-q", "-u", "origin", "main")
    profiles.mkdir()
    (profiles / "profiles.yml").write_text(
        textwrap.dedent(f"""\
            kiln_dev_test:
              target: dev
              outputs:
                dev:
                  type: duckdb
                  path: {warehouse}
                  threads: 1
            """)
    )
    return Project(root, workspace, origin, profiles, warehouse)


def dbt_cli(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    """The dbt CLI of this interpreter, as a user would run it."""
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    return subprocess.run(
        [PYTHON, "-c", "import sys; from dbt.cli.main import cli; sys.exit(cli())", *args,
         "--profiles-dir", str(project.profiles), "--project-dir", str(project.project_dir)],
        cwd=project.project_dir, env=env, capture_output=True, text=True, timeout=300,
    )


@dataclass
class DevServer:
    proc: asyncio.subprocess.Process
    port: int
    project: Project
    stderr_lines: list[str] = field(default_factory=list)
    _stderr_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._stderr_task is not None:
            await asyncio.wait_for(self._stderr_task, 5)
        return rc


async def start_server(project: Project, *extra: str, env: dict[str, str] | None = None,
                       timeout: float = 60) -> DevServer:
    environ = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "KILN_DEVELOP_SECRET": SECRET,
        "KILN_GIT_AUTHOR_NAME": "Dev Tester",
        "KILN_GIT_AUTHOR_EMAIL": "dev@example.com",
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-c", "from ide_broker.develop.server import main; raise SystemExit(main())",
        "--workspace", str(project.workspace), "--project-subdir", PROJECT_SUBDIR,
        "--profiles-dir", str(project.profiles), "--port", "0", *extra,
        cwd=REPO_ROOT, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    server = DevServer(proc, 0, project)

    async def drain(stream: asyncio.StreamReader) -> None:
        async for line in stream:
            server.stderr_lines.append(line.decode(errors="replace"))

    server._stderr_task = asyncio.create_task(drain(proc.stderr))
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    text = line.decode().strip()
    if not text.startswith("KILN_DEVELOP_READY port="):
        await server.stop(signal.SIGKILL)
        raise AssertionError(f"no READY line, got {text!r}; stderr:\n{server.stderr}")
    server.port = int(text.split("=", 1)[1])
    return server


class RpcCallError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error['code']}: {error['message']}")
        self.code: int = error["code"]
        self.message: str = error["message"]
        self.data: Any = error.get("data")


class RpcClient:
    """JSON-RPC over one websocket; notifications are collected in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.notifications: list[dict[str, Any]] = []
        self._notified = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data and ("result" in data or "error" in data):
                fut = self._pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
            else:
                async with self._notified:
                    self.notifications.append(data)
                    self._notified.notify_all()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("websocket closed"))
                fut.exception()  # an unanswered request nobody awaits is not an error

    async def send(self, method: str, params: dict[str, Any] | None = None
                   ) -> asyncio.Future[dict[str, Any]]:
        """Send a request; the returned future resolves to the whole response."""
        self._next_id += 1
        req_id = self._next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if params is not None:
            msg["params"] = params
        await self.ws.send_str(json.dumps(msg))
        return fut

    async def call(self, method: str, timeout: float = 120, **params: Any) -> Any:
        fut = await self.send(method, params)
        response = await asyncio.wait_for(fut, timeout)
        if "error" in response:
            raise RpcCallError(response["error"])
        return response["result"]

    async def wait_for_notification(self, predicate: Any, timeout: float = 60
                                    ) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            async with self._notified:
                while True:
                    for note in self.notifications:
                        if predicate(note):
                            return note
                    await self._notified.wait()

        return await asyncio.wait_for(find(), timeout)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


def auth_headers(secret: str = SECRET) -> dict[str, str]:
    return {"X-Kiln-Develop-Secret": secret}
