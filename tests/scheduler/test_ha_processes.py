"""Two real `kiln scheduler` processes on one database, on a fast simulated clock.

A simulated hour passes in 30 s (speed 120). The leader is killed with
SIGKILL halfway; the other takes over. Every 5-minute tick must have
exactly one run: no double fire, no gap.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import asyncpg

from server.db import credentials, migrate
from tests.conftest import free_port
from tests.kiln_process import KilnProcess, kiln_env

SPEED = 120.0


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def _is_leader(port: int) -> bool:
    m = re.search(r"^kiln_scheduler_leader (\S+)$", _metrics(port), re.M)
    return bool(m and float(m.group(1)) == 1.0)


class SchedulerProcess(KilnProcess):
    def wait_ready(self, timeout: float = 60) -> float:  # its ready line differs
        start = time.monotonic()
        while not any("scheduler is ready" in line for line in self.stdout):
            if self.proc.poll() is not None or time.monotonic() - start > timeout:
                raise AssertionError("".join(self.stdout) + "".join(self.stderr))
            time.sleep(0.05)
        return time.monotonic() - start


async def _seed(url: str, start: datetime, project_path: str) -> tuple[asyncpg.Connection, int]:
    """A job due every 5 minutes in a database of its own (no other test's jobs or runs)."""
    conn = await asyncpg.connect(**credentials(url))
    account = await conn.fetchval(
        "INSERT INTO account (name, run_slots, created_at, updated_at)"
        " VALUES ('ha', 1, now(), now()) RETURNING id"
    )
    project = await conn.fetchval(
        "INSERT INTO project (account_id, name, description, bundled_path, subdirectory,"
        " default_branch, created_at, updated_at)"
        " VALUES ($1, 'p', '', $2, '', 'main', now(), now()) RETURNING id",
        account,
        project_path,
    )
    env = await conn.fetchval(
        "INSERT INTO environment (account_id, project_id, name, kind, dbt_version, target_name,"
        " threads, created_at, updated_at)"
        " VALUES ($1, $2, 'prod', 'deployment', '1.11', 'prod', 4, now(), now()) RETURNING id",
        account,
        project,
    )
    # catch-up covers ticks that fall while a (slow-starting, or dying) leader is not
    # evaluating, so the assertion is about "exactly once", not about start-up speed
    job = await conn.fetchval(
        "INSERT INTO job (account_id, project_id, environment_id, name, description, steps,"
        " generate_docs, run_freshness, timeout_seconds, priority, cron, timezone, catchup,"
        " catchup_cap, schedule_epoch, trigger_statuses, triggers, created_at, updated_at)"
        " VALUES ($1, $2, $3, 'ha', '', '[\"dbt build\"]', false, false, 0, 0, '*/5 * * * *',"
        " 'UTC', 'latest', 12, $4, '[]', '{}', $5, now()) RETURNING id",
        account,
        project,
        env,
        start - timedelta(seconds=1),
        start - timedelta(days=1),
    )
    return conn, job


async def test_two_schedulers_fire_each_tick_once_and_hand_over(make_database, tmp_path):
    db_url = make_database()
    await migrate(db_url)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    start = start.replace(minute=0, second=0)
    conn, job_id = await _seed(db_url, start, str(tmp_path / "no-project"))
    origin = time.time() + 3.0  # both processes share the simulated origin
    env = kiln_env(
        KILN_DATABASE_URL=db_url,
        KILN_DATA_DIR=str(tmp_path / "data"),
        KILN_CLOCK_START=start.isoformat(),
        KILN_CLOCK_SPEED=str(SPEED),
        KILN_CLOCK_ORIGIN=str(origin),
        KILN_SCHEDULER_CRON_INTERVAL="0.25",
        KILN_SCHEDULER_LEADER_RETRY="0.5",
        KILN_RUN_SLOTS="1",
    )
    ports = [free_port(), free_port()]
    procs = [SchedulerProcess(["scheduler", "--port", str(p)], env=env) for p in ports]
    try:
        for p in procs:
            p.wait_ready()
        # run half of the simulated hour
        time.sleep(max(0.0, origin + 30 * 60 / SPEED - time.time()))
        leaders = [i for i, port in enumerate(ports) if _is_leader(port)]
        assert len(leaders) == 1, leaders
        text = _metrics(ports[leaders[0]])
        for task in ("cron", "cleanup", "chain-scan", "ide-cull"):  # each task is visible
            assert re.search(rf'^kiln_task_runs_total{{task="{task}"}} [1-9]', text, re.M), task
        assert "kiln_queue_depth" in text and "kiln_tick_lag_seconds_bucket" in text
        # runs created so far, by whichever process led when they were due
        created = sum(
            float(m.group(1))
            for port in ports
            for m in [
                re.search(
                    r'^kiln_runs_created_total{trigger="schedule"} (\S+)$', _metrics(port), re.M
                )
            ]
            if m
        )
        assert created >= 1, [_metrics(p) for p in ports]
        procs[leaders[0]].stop(signal.SIGKILL)
        follower = 1 - leaders[0]
        deadline = time.time() + 15
        while not _is_leader(ports[follower]):
            assert time.time() < deadline, "no takeover within 15 s"
            time.sleep(0.2)
        time.sleep(max(0.0, origin + 61 * 60 / SPEED - time.time()))
        expected = [start + timedelta(minutes=5 * i) for i in range(12)]
        deadline = time.time() + 20  # a loaded machine may evaluate late; never twice
        while True:
            ticks = sorted(
                r["scheduled_for"]
                for r in await conn.fetch("SELECT scheduled_for FROM run WHERE job_id = $1", job_id)
            )
            in_hour = [x for x in ticks if x < start + timedelta(hours=1)]
            if len(in_hour) >= 12 or time.time() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        for p in procs:
            p.stop()
        await conn.close()
    logs = "\n".join("".join(p.stderr)[-3000:] for p in procs)
    assert in_hour == expected, (ticks, logs)
