"""``kiln gateway --workers N``: several gateway processes on one port, stopped as one."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from pathlib import Path

import psutil

from tests.conftest import free_port
from tests.kiln_process import KilnProcess, kiln_env, run_kiln


def _workers(supervisor: KilnProcess) -> list[psutil.Process]:
    return psutil.Process(supervisor.proc.pid).children()


def _version(url: str) -> str:
    req = urllib.request.Request(
        f"{url}/graphql",
        method="POST",
        data=json.dumps({"query": "{ version }"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["data"]["version"]


def _start(tmp_path: Path, db_url: str, workers: int = 2) -> tuple[KilnProcess, int]:
    port = free_port()
    env = kiln_env(KILN_DATABASE_URL=db_url, KILN_DATA_DIR=str(tmp_path / "data"))
    gateway = KilnProcess(["gateway", "--port", str(port), "--workers", str(workers)], env=env)
    gateway.wait_ready()
    return gateway, port


def test_workers_share_the_port_and_stop_together(tmp_path: Path, make_database) -> None:
    gateway, port = _start(tmp_path, make_database())
    try:
        shared = "2 gateway processes share the port"
        assert any(shared in line for line in gateway.stdout), gateway.stdout
        workers = _workers(gateway)
        assert len(workers) == 2
        for w in workers:
            listening = [c for c in w.net_connections() if c.status == psutil.CONN_LISTEN]
            assert [c.laddr.port for c in listening] == [port]
        # the kernel spreads new connections over both workers
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(24)]
        try:
            time.sleep(0.3)
            per_worker = [
                sum(
                    1
                    for c in w.net_connections()
                    if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
                )
                for w in workers
            ]
            assert sum(per_worker) == 24 and min(per_worker) > 0, per_worker
        finally:
            for s in socks:
                s.close()
        assert {_version(gateway.url) for _ in range(20)} == {_version(gateway.url)}
        pids = [w.pid for w in workers]
    finally:
        code = gateway.stop(signal.SIGTERM)
    assert code == 0, "".join(gateway.stderr)[-3000:]
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_a_dying_worker_stops_the_gateway(tmp_path: Path, make_database) -> None:
    """Half a gateway would be silently slower: the supervisor ends, so it gets restarted."""
    gateway, _port = _start(tmp_path, make_database())
    try:
        victim, survivor = _workers(gateway)
        victim.kill()
        assert gateway.proc.wait(30) != 0
        survivor.wait(10)
        assert "a worker exited" in "".join(gateway.stderr)
    finally:
        gateway.stop()


def test_workers_refused_without_an_external_database(tmp_path: Path) -> None:
    env = kiln_env(KILN_DATA_DIR=str(tmp_path / "data"))
    r = run_kiln(["gateway", "--workers", "2", "--port", str(free_port())], env=env)
    assert r.returncode == 2
    assert "--workers needs an external database" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_kiln(["gateway", "--workers", "0"], env=env)
    assert r.returncode == 2 and "--workers must be at least 1" in r.stderr
