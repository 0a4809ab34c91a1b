"""A burst of 200 triggers: slots and serial runs hold at every step; waiting reasons."""

from __future__ import annotations

import asyncio

from server import dispatcher
from server.models import Account, Environment, Job, Run, RunStatus
from server.runs import state
from server.services import runs
from server.services.queue import queue_info
from tests.factories import make_tenant
from tests.runs.test_dispatch import FakeLauncher


async def test_burst_of_200_triggers_respects_slots_and_serial_runs(platform) -> None:
    t = await make_tenant()
    await Account.filter(id=t.account.id).update(run_slots=4)
    jobs = [t.job]
    for i in range(7):  # separate postgres-like environments: no shared DuckDB file
        env = await Environment.create(
            account_id=t.account.id, project_id=t.project.id, name=f"pg-{i}"
        )
        jobs.append(
            await Job.create(
                account_id=t.account.id,
                project_id=t.project.id,
                environment=env,
                name=f"j{i}",
                steps=["dbt run"],
            )
        )
    actor = t.actor()
    await asyncio.gather(
        *(runs.trigger_run(actor, jobs[i % len(jobs)].id, trigger_kind="api") for i in range(200))
    )
    assert await Run.filter(account_id=t.account.id, status=RunStatus.QUEUED).count() == 200

    launcher = FakeLauncher()
    finished = 0
    started_order: dict[int, list[int]] = {}
    while finished < 200:
        # two dispatchers race every round
        await asyncio.gather(
            dispatcher.dispatch_once(platform, launcher, [t.account.id]),
            dispatcher.dispatch_once(platform, launcher, [t.account.id]),
        )
        active = await Run.filter(
            account_id=t.account.id, status__in=(RunStatus.STARTING, RunStatus.RUNNING)
        )
        assert 0 < len(active) <= 4
        assert len({r.job_id for r in active}) == len(active)  # one per job
        if finished == 0:
            infos = await queue_info(
                actor,
                platform.db,
                [r.id for r in await Run.filter(account_id=t.account.id, status=RunStatus.QUEUED)],
            )
            reasons = {i.reason.split(" ")[0] for i in infos.values()}
            assert infos and reasons <= {"Waiting", "Queued", "All"}
            assert sorted(i.position for i in infos.values()) == list(range(1, len(infos) + 1))
        for r in active:
            started_order.setdefault(r.job_id, []).append(r.id)
            async with platform.db.acquire() as c:
                await state.transition(c, r.id, RunStatus.RUNNING)
                assert await state.transition(c, r.id, RunStatus.SUCCESS)
            finished += 1
    assert len(launcher.launched) == 200 == len({s.run_id for s in launcher.launched})
    for ids in started_order.values():
        assert ids == sorted(ids)  # each job's runs started oldest first


async def test_waiting_reasons(platform) -> None:
    t = await make_tenant()
    await Account.filter(id=t.account.id).update(run_slots=1)
    other_env = await Environment.create(
        account_id=t.account.id, project_id=t.project.id, name="pg"
    )
    other = await Job.create(
        account_id=t.account.id,
        project_id=t.project.id,
        environment=other_env,
        name="other",
        steps=["dbt run"],
    )
    a1 = await runs.trigger_run(t.actor(), t.job.id)
    a2 = await runs.trigger_run(t.actor(), t.job.id)
    a3 = await runs.trigger_run(t.actor(), t.job.id)
    b1 = await runs.trigger_run(t.actor(), other.id)
    info = await queue_info(t.actor(), platform.db, [a1.id, a2.id, b1.id])
    assert info[a1.id].reason == "Waiting to be dispatched" and info[a1.id].position == 1
    assert info[a2.id].reason == f"Queued behind run {a1.id} of the same job"
    async with platform.db.acquire() as c:
        await state.transition(c, a1.id, RunStatus.STARTING)
    info = await queue_info(t.actor(), platform.db, [a2.id, a3.id, b1.id])
    assert info[a2.id].reason == f"Waiting for run {a1.id} of the same job to finish"
    assert info[a2.id].position == 1 and info[a3.id].position == 2
    assert info[b1.id].reason == "All 1 run slots of the account are in use"
    other_tenant = await make_tenant()
    assert await queue_info(other_tenant.actor(), platform.db, [a2.id]) == {}
