"""``kiln develop``: the per-user IDE backend (aiohttp app and process entry).

The spawner starts this process with the session secret in
``KILN_DEVELOP_SECRET`` and reads ONE line from stdout,
``KILN_DEVELOP_READY port=<port>``, once it listens. After that line stdout
is pointed at stderr, so nothing else (dbt included) can write to it.

* ``GET /healthz`` answers without auth.
* ``GET /ws`` upgrades only with the secret (``X-Kiln-Develop-Secret`` or
  ``Authorization: Bearer``, compared in constant time): 401 without one,
  403 with a wrong one, both before the upgrade. Compression is off.
* Each text frame is dispatched as its own task, so a long ``dbt.invoke``
  never blocks ``fs.read``; sends on one socket are serialized. When a
  socket closes its pending requests are cancelled (which kills their dbt).
* SIGTERM/SIGINT: running dbt is cancelled, sockets close, exit status 0.
* The secret is removed from the environment at startup, so neither dbt
  subprocesses nor in-process dbt (``env_var``) can read it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hmac
import json
import logging
import os
import signal
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from .errors import RpcError
from .rpc import Dispatcher
from .session import Session, Settings

log = logging.getLogger("kiln.develop")

SECRET_ENV = "KILN_DEVELOP_SECRET"
READY_PREFIX = "KILN_DEVELOP_READY"
MAX_FRAME = 32 * 1024 * 1024
SECRET_KEY = web.AppKey("secret", bytes)
DISPATCHER_KEY = web.AppKey("dispatcher", Dispatcher)
SOCKETS_KEY = web.AppKey("sockets", set)


class StartupError(Exception):
    """The server cannot start; main prints one line and exits non-zero."""


class Connection:
    """One websocket: serialized sends, its in-flight request tasks."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._send_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()

    async def send_text(self, text: str) -> None:
        async with self._send_lock:
            if self.ws.closed:
                return
            with suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(text)

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        frame = {"jsonrpc": "2.0", "method": method, "params": params}
        await self.send_text(json.dumps(frame, ensure_ascii=False, separators=(",", ":")))

    def spawn(self, dispatcher: Dispatcher, text: str) -> None:
        async def handle() -> None:
            reply = await dispatcher.handle_text(text, self)
            if reply is not None:
                await self.send_text(reply)

        task = asyncio.create_task(handle())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _presented_secret(request: web.Request) -> str | None:
    header = request.headers.get("X-Kiln-Develop-Secret")
    if header:
        return header
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def websocket(request: web.Request) -> web.StreamResponse:
    presented = _presented_secret(request)
    if presented is None:
        return web.json_response(
            {"error": "missing session secret"}, status=401,
            headers={"WWW-Authenticate": 'Bearer realm="kiln-develop"'},
        )
    if not hmac.compare_digest(presented.encode(), request.app[SECRET_KEY]):
        return web.json_response({"error": "wrong session secret"}, status=403)
    ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_FRAME, heartbeat=30.0)
    await ws.prepare(request)
    conn = Connection(ws)
    dispatcher = request.app[DISPATCHER_KEY]
    request.app[SOCKETS_KEY].add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                conn.spawn(dispatcher, msg.data)
            elif msg.type == WSMsgType.BINARY:
                await conn.send_text(
                    '{"jsonrpc":"2.0","id":null,"error":{"code":-32600,'
                    '"message":"Invalid Request: binary frames are not supported"}}'
                )
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        request.app[SOCKETS_KEY].discard(ws)
        await conn.close()
    return ws


async def _close_sockets(app: web.Application) -> None:
    """on_shutdown: close open sockets (1001 going away) instead of waiting them out."""
    sockets = list(app[SOCKETS_KEY])
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping") for ws in sockets),
        return_exceptions=True,
    )


def make_app(session: Session, secret: str) -> web.Application:
    from .methods import build_methods

    app = web.Application(client_max_size=MAX_FRAME)
    app[SECRET_KEY] = secret.encode()
    app[DISPATCHER_KEY] = Dispatcher(build_methods(session))
    app[SOCKETS_KEY] = set()
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ws", websocket)
    return app


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kiln develop", description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True, type=Path, help="the git checkout")
    parser.add_argument("--project-subdir", default="", help="dbt project inside the workspace")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--profiles-dir", required=True, type=Path, help="holds profiles.yml")
    parser.add_argument("--target", default=None, help="dbt target (default: the profile's)")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace, settings: Settings, secret: str) -> None:
    try:
        session = Session(settings)
    except (RpcError, OSError) as exc:
        raise StartupError(f"cannot open the workspace: {exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(make_app(session, secret), access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    try:
        await site.start()
    except OSError as exc:  # e.g. the port is taken
        await runner.cleanup()
        raise StartupError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
    port = runner.addresses[0][1]
    print(f"{READY_PREFIX} port={port}", flush=True)
    # The READY line is the only stdout output: from here on Python and C code
    # (dbt, DuckDB) writing to stdout lands on stderr.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    log.info("develop server on %s:%d, workspace %s", args.host, port, settings.workspace)
    session.start()
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        await session.stop()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("KILN_LOG_LEVEL", "INFO").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    secret = os.environ.pop(SECRET_ENV, "")
    if not secret:
        print(f"kiln develop: {SECRET_ENV} is not set; refusing to start", file=sys.stderr)
        return 2
    problem = _check_dirs(args)
    if problem:
        print(f"kiln develop: {problem}", file=sys.stderr)
        return 2
    workspace = args.workspace.resolve()
    settings = Settings(
        workspace=workspace,
        project_subdir=args.project_subdir,
        profiles_dir=args.profiles_dir.resolve(),
        target=args.target,
        author_name=os.environ.get("KILN_GIT_AUTHOR_NAME") or "Kiln Developer",
        author_email=os.environ.get("KILN_GIT_AUTHOR_EMAIL") or "developer@kiln.local",
    )
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    # Relative paths in profiles (e.g. a DuckDB file) mean the same to the warm
    # runner as to the dbt subprocesses, which run in the project directory.
    os.chdir(workspace / args.project_subdir)
    try:
        asyncio.run(serve(args, settings, secret))
    except StartupError as exc:
        print(f"kiln develop: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    # In-process dbt leaves thread pools in reference cycles; collect them now,
    # while their pipes are open, instead of during interpreter teardown.
    gc.collect()
    sys.stderr.flush()
    return 0


def _check_dirs(args: argparse.Namespace) -> str | None:
    if not args.workspace.is_dir():
        return f"--workspace {args.workspace} is not a directory"
    project = (args.workspace / args.project_subdir).resolve()
    if not project.is_relative_to(args.workspace.resolve()):
        return f"--project-subdir {args.project_subdir!r} is outside the workspace"
    if not project.is_dir():
        return f"--project-subdir {args.project_subdir!r}: {project} is not a directory"
    if not args.profiles_dir.is_dir():
        return f"--profiles-dir {args.profiles_dir} is not a directory"
    return None


if __name__ == "__main__":
    raise SystemExit(main())
