"""Dispatcher and monitor rules against the real database, with a fake launcher.

No worker processes: these tests check who gets dispatched, in which order,
under which limits, and how the monitor resolves every way a worker can go
missing. The real engine (conftest) is scoped to its own tenants, so it never
touches the runs made here.
"""

from __future__ import annotations

import asyncio
import time

from server import dispatcher
from server.launchers.base import LaunchSpec, RunLauncher, WorkerHealth, WorkerState
from server.models import Account, Connection, Environment, Job, Run, RunStatus
from server.monitor import MonitorContext, monitor_once
from server.runs import state
from server.services import runs
from tests.factories import Tenant, make_tenant
from tests.runs.conftest import Engine, wait_run


class FakeLauncher(RunLauncher):
    kind = "local"

    def __init__(self, *, fail: bool = False) -> None:
        self.launched: list[LaunchSpec] = []
        self.terminated: list[int] = []
        self.health: dict[int, WorkerHealth] = {}
        self.fail = fail

    async def launch(self, spec: LaunchSpec) -> str:
        if self.fail:
            raise RuntimeError("no capacity")
        self.launched.append(spec)
        return f"fake-{spec.run_id}"

    async def terminate(self, run_id: int, handle: str | None) -> None:
        self.terminated.append(run_id)

    async def check_health(self, run_id: int, handle: str | None) -> WorkerHealth:
        return self.health.get(run_id, WorkerHealth(WorkerState.RUNNING))


async def _job(t: Tenant, name: str, *, duckdb: str | None = None) -> Job:
    env = t.environment
    if duckdb is not None:
        conn = await Connection.create(
            account_id=t.account.id,
            name=f"c-{name}",
            adapter_type="duckdb",
            details={"path": duckdb},
        )
        env = await Environment.create(
            account_id=t.account.id, project_id=t.project.id, name=f"e-{name}", connection=conn
        )
    return await Job.create(
        account_id=t.account.id,
        project_id=t.project.id,
        environment=env,
        name=name,
        steps=["dbt build"],
    )


async def _finish(platform, run_id: int, to: RunStatus = RunStatus.SUCCESS) -> None:
    async with platform.db.acquire() as c:
        if to == RunStatus.SUCCESS:
            await state.transition(c, run_id, RunStatus.RUNNING)
        assert await state.transition(c, run_id, to) is not None


async def test_runs_of_one_job_are_serial_and_in_order(platform) -> None:
    t = await make_tenant()
    fake = FakeLauncher()
    ids = [(await runs.trigger_run(t.actor(), t.job.id)).id for _ in range(3)]
    for expected in ids:
        picked = await dispatcher.dispatch_once(platform, fake, [t.account.id])
        assert [p.run_id for p in picked] == [expected]
        assert await dispatcher.dispatch_once(platform, fake, [t.account.id]) == []
        run = await Run.get(id=expected)
        assert run.status == RunStatus.STARTING and run.worker_handle == f"fake-{expected}"
        assert run.worker_token_hash and run.launcher == "local" and run.dequeued_at
        await _finish(platform, expected)
    # the clear token went to the launcher only; the run stores its hash
    from server.crypto import hash_token

    assert hash_token(fake.launched[0].token) != fake.launched[0].token


async def test_run_slots_and_duckdb_files(platform) -> None:
    t = await make_tenant()
    await Account.filter(id=t.account.id).update(run_slots=2)
    fake = FakeLauncher()
    same_a = await _job(t, "a", duckdb="/tmp/kiln-shared.duckdb")
    same_b = await _job(t, "b", duckdb="/tmp/kiln-shared.duckdb")
    other = [
        await _job(t, f"o{i}", duckdb=f"/tmp/kiln-{t.account.id}-{i}.duckdb") for i in range(3)
    ]
    ra = await runs.trigger_run(t.actor(), same_a.id)
    rb = await runs.trigger_run(t.actor(), same_b.id)
    ro = [await runs.trigger_run(t.actor(), j.id) for j in other]
    picked = await dispatcher.dispatch_once(platform, fake, [t.account.id])
    # two slots; the oldest run takes the shared file, so its sibling must wait
    assert [p.run_id for p in picked] == [ra.id, ro[0].id]
    await _finish(platform, ra.id)
    picked = await dispatcher.dispatch_once(platform, fake, [t.account.id])
    assert [p.run_id for p in picked] == [rb.id]
    await _finish(platform, ro[0].id, RunStatus.ERROR)
    await _finish(platform, rb.id, RunStatus.CANCELLED)
    picked = await dispatcher.dispatch_once(platform, fake, [t.account.id])
    assert [p.run_id for p in picked] == [ro[1].id, ro[2].id]


async def test_concurrent_dispatchers_never_exceed_limits(platform) -> None:
    tenants = [await make_tenant() for _ in range(3)]
    for t in tenants:
        await Account.filter(id=t.account.id).update(run_slots=3)
    jobs = {
        t.account.id: [t.job]
        + [await _job(t, f"j{i}", duckdb=f"/tmp/kiln-{t.account.id}-{i}.duckdb") for i in range(4)]
        for t in tenants
    }
    for t in tenants:
        for j in jobs[t.account.id]:
            for _ in range(2):
                await runs.trigger_run(t.actor(), j.id)
    accounts = [t.account.id for t in tenants]
    fakes = [FakeLauncher() for _ in range(6)]
    results = await asyncio.gather(
        *(dispatcher.dispatch_once(platform, f, accounts) for f in fakes)
    )
    picked = [p for r in results for p in r]
    assert len(picked) == len({p.run_id for p in picked}) == 9  # 3 accounts x 3 slots
    for acct in accounts:
        mine = [p for p in picked if p.account_id == acct]
        assert len(mine) == 3 and len({p.job_id for p in mine}) == 3


async def test_launch_failure_ends_the_run_in_error(platform) -> None:
    t = await make_tenant()
    run = await runs.trigger_run(t.actor(), t.job.id)
    await dispatcher.dispatch_once(platform, FakeLauncher(fail=True), [t.account.id])
    run = await Run.get(id=run.id)
    assert run.status == RunStatus.ERROR and "no capacity" in run.status_message
    assert run.worker_token_hash is None


async def test_dispatcher_wakes_on_notify(engine: Engine) -> None:
    """The engine polls every 2 s; a new run is picked long before that."""
    t = await engine.tenant()  # project path does not exist: the worker fails at Clone
    lat = []
    for _ in range(3):
        t0 = time.monotonic()
        run = await runs.trigger_run(t.actor(), t.job.id)
        await wait_run(run.id, 10, until=lambda r: r.status != RunStatus.QUEUED)
        lat.append(time.monotonic() - t0)
        done = await wait_run(run.id, 30)
        assert done.status == RunStatus.ERROR and "Clone failed" in done.status_message
    assert sorted(lat)[1] < 1.0, lat


def _ctx(platform, fake: FakeLauncher, accounts: list[int], **kw) -> MonitorContext:
    return MonitorContext(platform, fake, heartbeat_interval=0.5, accounts=accounts, **kw)


async def _starting(platform, t: Tenant, handle: str | None = "h") -> int:
    run = await runs.trigger_run(t.actor(), t.job.id)
    async with platform.db.acquire() as c:
        await state.transition(
            c,
            run.id,
            RunStatus.STARTING,
            set_fields={"worker_handle": handle, "launcher": "local"},
        )
    return run.id


async def test_monitor_fails_dead_and_silent_workers(platform) -> None:
    t = await make_tenant()
    await Account.filter(id=t.account.id).update(run_slots=50)
    fake = FakeLauncher()
    ctx = _ctx(platform, fake, [t.account.id])

    dead = await _starting(platform, t)  # exits before it reports running
    fake.health[dead] = WorkerHealth(WorkerState.EXITED, 1, "worker exited with exit code 1")
    await monitor_once(ctx)
    r = await Run.get(id=dead)
    assert r.status == RunStatus.ERROR and "exit code 1" in r.status_message

    killed = await _starting(platform, t)
    async with platform.db.acquire() as c:
        await state.transition(c, killed, RunStatus.RUNNING)
    fake.health[killed] = WorkerHealth(WorkerState.EXITED, -9, "worker killed by SIGKILL")
    await monitor_once(ctx)
    r = await Run.get(id=killed)
    assert r.status == RunStatus.ERROR and "SIGKILL" in r.status_message
    assert killed in fake.terminated  # what is left of the process group is killed

    silent = await _starting(platform, t)
    async with platform.db.acquire() as c:
        await state.transition(c, silent, RunStatus.RUNNING)
    await monitor_once(ctx)
    assert (await Run.get(id=silent)).status == RunStatus.RUNNING
    await asyncio.sleep(1.6)  # three intervals of 0.5 s
    await monitor_once(ctx)
    r = await Run.get(id=silent)
    assert r.status == RunStatus.ERROR and "no heartbeat" in r.status_message

    never = await _starting(platform, t, handle=None)
    await monitor_once(_ctx(platform, fake, [t.account.id], launch_grace=0.0))
    r = await Run.get(id=never)
    assert r.status == RunStatus.ERROR and "never launched" in r.status_message


async def test_monitor_cancel_escalation_and_timeout(platform) -> None:
    t = await make_tenant()
    await Account.filter(id=t.account.id).update(run_slots=50)
    fake = FakeLauncher()
    ctx = _ctx(platform, fake, [t.account.id], cancel_grace=0.5, timeout_grace=0.0)

    stuck = await _starting(platform, t)
    async with platform.db.acquire() as c:
        await state.transition(c, stuck, RunStatus.RUNNING)
    await runs.cancel_run(t.actor(), stuck, platform.db, reason="stop it")
    await monitor_once(ctx)
    assert (await Run.get(id=stuck)).status == RunStatus.RUNNING  # the worker has its grace
    await asyncio.sleep(0.6)
    await monitor_once(ctx)
    r = await Run.get(id=stuck)
    assert r.status == RunStatus.CANCELLED and r.status_message.startswith("stop it")
    assert stuck in fake.terminated

    slow = await _starting(platform, t)
    async with platform.db.acquire() as c:
        await c.execute("UPDATE run SET timeout_seconds = 1 WHERE id = $1", slow)
        await state.transition(c, slow, RunStatus.RUNNING)
    await asyncio.sleep(1.1)
    fake.health[slow] = WorkerHealth(WorkerState.RUNNING)
    async with platform.db.acquire() as c:  # keep it heart-beating
        await c.execute("UPDATE run SET heartbeat_at = now() WHERE id = $1", slow)
    await monitor_once(ctx)
    r = await Run.get(id=slow)
    assert r.status == RunStatus.RUNNING and r.cancel_reason.startswith("Timed out after 1 second")
    await asyncio.sleep(0.6)
    async with platform.db.acquire() as c:
        await c.execute("UPDATE run SET heartbeat_at = now() WHERE id = $1", slow)
    await monitor_once(ctx)
    r = await Run.get(id=slow)
    assert r.status == RunStatus.CANCELLED and "Timed out" in r.status_message

    # a worker that ends the run while the monitor decides: the worker's status stands
    racing = await _starting(platform, t)
    async with platform.db.acquire() as c:
        await state.transition(c, racing, RunStatus.RUNNING)
        await state.transition(c, racing, RunStatus.SUCCESS)
    fake.health[racing] = WorkerHealth(WorkerState.EXITED, 0)
    await monitor_once(ctx)
    assert (await Run.get(id=racing)).status == RunStatus.SUCCESS


async def test_orphans_of_a_previous_process_are_resolved_on_start(platform) -> None:
    """Runs left running by a dead scheduler: gone workers fail, live ones get a grace."""
    from server.launchers.local import LocalRunLauncher

    t = await make_tenant()
    await Account.filter(id=t.account.id).update(run_slots=50)
    launcher = LocalRunLauncher(platform.settings)
    gone = await _starting(platform, t, handle="999999:1.0")  # no such process
    alive_pid = await asyncio.create_subprocess_exec("sleep", "30", start_new_session=True)
    import psutil

    ctime = psutil.Process(alive_pid.pid).create_time()
    alive = await _starting(platform, t, handle=f"{alive_pid.pid}:{ctime:.3f}")
    reused = await _starting(platform, t, handle=f"{alive_pid.pid}:{ctime - 100:.3f}")
    elsewhere = await _starting(platform, t, handle="1:1.0@another-host")
    async with platform.db.acquire() as c:
        for rid in (gone, alive, reused, elsewhere):
            await state.transition(c, rid, RunStatus.RUNNING)
        await c.execute(
            "UPDATE run SET heartbeat_at = now() - interval '1 hour' WHERE id = ANY($1::bigint[])",
            [gone, alive, reused, elsewhere],
        )
        started = await c.fetchval("SELECT now()")
    ctx = MonitorContext(
        platform, launcher, heartbeat_interval=0.5, accounts=[t.account.id], started_at=started
    )
    try:
        await monitor_once(ctx)
        r = await Run.get(id=gone)
        assert r.status == RunStatus.ERROR and "999999 is gone" in r.status_message
        r = await Run.get(id=reused)  # same pid, another process: never killed, run failed
        assert r.status == RunStatus.ERROR and alive_pid.returncode is None
        assert (await Run.get(id=alive)).status == RunStatus.RUNNING  # grace from our start
        assert (await Run.get(id=elsewhere)).status == RunStatus.RUNNING  # not ours to judge
        await asyncio.sleep(1.6)
        await monitor_once(ctx)
        for rid in (alive, elsewhere):  # ... but heartbeats judge every run
            r = await Run.get(id=rid)
            assert r.status == RunStatus.ERROR and "no heartbeat" in r.status_message
        await asyncio.wait_for(alive_pid.wait(), 10)  # terminated: its group was killed
    finally:
        if alive_pid.returncode is None:
            alive_pid.kill()
            await alive_pid.wait()


async def test_worker_reaches_an_https_api_with_its_own_certificate(platform, tmp_path) -> None:
    """kiln up --tls-cert: the launcher hands the worker the API's certificate to trust."""
    import dataclasses
    import ssl

    from aiohttp import web

    from server.gateway.app import PLATFORM
    from server.gateway.internal import add_internal_routes
    from server.launchers.local import LocalRunLauncher
    from server.runs.engine import start_engine
    from tests.conftest import free_port
    from tests.rest.conftest import write_cert

    cert, key = write_cert(tmp_path)
    port = free_port()
    settings = platform.settings.with_overrides(port=port, tls_cert=cert, tls_key=key)
    p = dataclasses.replace(platform, settings=settings, services={})
    app = web.Application()
    app[PLATFORM] = p
    add_internal_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    t = await make_tenant()  # its project does not exist: the run ends at Clone
    stop = await start_engine(
        p, launcher=LocalRunLauncher(settings), poll_interval=1.0, accounts={t.account.id}
    )
    try:
        assert settings.api_url.startswith("https://")
        run = await runs.trigger_run(t.actor(), t.job.id)
        done = await wait_run(run.id, 30)
        assert done.status == RunStatus.ERROR and "Clone failed" in done.status_message
    finally:
        await stop()
        await runner.cleanup()
