"""Webhook deliveries driven by run events: shape, signature, retries, restarts, idempotency."""

from __future__ import annotations

import asyncio
from collections import Counter

from server.models import Run, RunStatus, WebhookDelivery
from server.platform import Platform
from server.runs import state
from server.webhooks import delivery, payloads, service
from tests.factories import Tenant, make_tenant
from tests.rest.conftest import finish_run, queued_run
from tests.webhooks.conftest import Receiver, Tasks, eventually

ALL = list(payloads.EVENT_TYPES)


async def subscribe(platform: Platform, t: Tenant, url: str, **values):
    hook = await service.create_webhook(
        t.actor(), platform.vault,
        {"name": "hook", "client_url": url, "event_types": ALL, **values},
    )
    return hook, service.secret_of(hook, platform.vault)


async def test_run_events_are_delivered_signed_in_dbt_clouds_shape(
    platform: Platform, receiver: Receiver, tasks: Tasks
) -> None:
    t = await make_tenant()
    hook, secret = await subscribe(platform, t, receiver.hook("shape"))
    run = await finish_run(platform, await queued_run(t, cause="Kicked off by test"))
    got = await eventually(lambda: len(receiver.got("shape")) >= 2 and receiver.got("shape"))
    await asyncio.sleep(0.5)
    assert [r.json["eventType"] for r in got] == ["job.run.started", "job.run.completed"]
    for r in got:
        assert payloads.verify(secret, r.body, r.headers["Authorization"])
        assert r.headers["Content-Type"] == "application/json"
    started, completed = (r.json for r in got)
    assert started["accountId"] == t.account.id
    assert started["webhooksID"] == f"wsu_{hook.id}" and started["webhookName"] == "hook"
    assert started["eventId"] == f"wev_{run.id}_started"
    assert started["timestamp"].endswith("Z")
    data = completed["data"]
    assert data["jobId"] == str(t.job.id) and data["runId"] == str(run.id)
    assert data["jobName"] == "build" and data["environmentName"] == "Production"
    assert data["projectName"] == "shop" and data["projectId"] == str(t.project.id)
    assert data["runStatus"] == "Success" and data["runStatusCode"] == 10
    assert data["runReason"] == "Kicked off by test" and data["runFinishedAt"]
    assert started["data"]["runStatus"] == "Running" and "runFinishedAt" not in started["data"]
    rows = await WebhookDelivery.filter(webhook_id=hook.id).order_by("id")
    assert [(d.status, d.attempts, d.last_status_code) for d in rows] == [
        ("delivered", 1, 200), ("delivered", 1, 200)
    ]
    # the stored payload is the exact body that was signed and sent
    assert [d.payload.encode() for d in rows] == [r.body for r in got]


async def test_errored_runs_and_subscription_filters(
    platform: Platform, receiver: Receiver, tasks: Tasks
) -> None:
    t = await make_tenant()
    await subscribe(platform, t, receiver.hook("err-all"))
    await subscribe(platform, t, receiver.hook("err-only"), event_types=["job.run.errored"])
    other_job = await t.job.clone(pk=None)
    other_job.name = "other"
    await other_job.save()
    await subscribe(platform, t, receiver.hook("err-other-job"), job_ids=[other_job.id])
    await subscribe(platform, t, receiver.hook("err-inactive"), active=False)
    run = await finish_run(platform, await queued_run(t), RunStatus.ERROR, message="SQL error")
    await eventually(lambda: len(receiver.got("err-all")) == 3)
    await eventually(lambda: len(receiver.got("err-only")) == 1)
    await asyncio.sleep(1.0)
    assert [r.json["eventType"] for r in receiver.got("err-all")] == [
        "job.run.started", "job.run.completed", "job.run.errored"
    ]
    errored = receiver.got("err-only")[0].json
    assert errored["data"]["runStatus"] == "Errored" and errored["data"]["runStatusCode"] == 20
    assert errored["data"]["runStatusMessage"] == "SQL error" and errored["data"]["runErroredAt"]
    assert errored["eventId"] == f"wev_{run.id}_errored"
    assert receiver.got("err-other-job") == [] and receiver.got("err-inactive") == []


async def test_retries_with_backoff_then_success_or_failure(
    platform: Platform, receiver: Receiver, tasks: Tasks
) -> None:
    t = await make_tenant()
    flaky, _ = await subscribe(platform, t, receiver.hook("flaky"),
                               event_types=["job.run.completed"])
    dead, _ = await subscribe(platform, t, receiver.hook("dead"),
                              event_types=["job.run.completed"])
    slow, _ = await subscribe(platform, t, receiver.hook("slow"),
                              event_types=["job.run.completed"])
    receiver.program("flaky", 500, 503)
    receiver.program("dead", *([500] * 10))
    receiver.program("slow", 3.0)  # longer than the 1 s timeout of these tests
    await finish_run(platform, await queued_run(t))

    async def settled(hook_id: int, status: str) -> WebhookDelivery | None:
        d = await WebhookDelivery.get_or_none(webhook_id=hook_id)
        return d if d is not None and d.status == status else None

    d = await eventually(lambda: settled(flaky.id, "delivered"))
    assert d.attempts == 3 and d.last_status_code == 200 and d.last_error is None
    assert len(receiver.got("flaky")) == 3
    d = await eventually(lambda: settled(dead.id, "failed"), timeout=30)
    assert d.attempts == 1 + delivery.RETRIES and d.last_status_code == 500
    assert "HTTP 500" in d.last_error and d.next_attempt_at is None
    assert len(receiver.got("dead")) == 1 + delivery.RETRIES
    d = await eventually(lambda: settled(slow.id, "delivered"))
    assert d.attempts == 2
    # the backoff doubles: 0.2 s, 0.4 s, 0.8 s, 1.6 s, 3.2 s between the dead hook's tries
    assert delivery.Deliverer(platform.db, platform.vault, backoff=0.2).delay(5) == 3.2


async def test_restart_neither_loses_nor_duplicates(
    platform: Platform, receiver: Receiver, fast_webhooks: None
) -> None:
    t = await make_tenant()
    await subscribe(platform, t, receiver.hook("restart"))
    first = await Tasks(platform).start()
    run1 = await finish_run(platform, await queued_run(t))
    await eventually(lambda: len(receiver.got("restart")) == 2)
    await first.stop()
    # while no scheduler listens: a run starts and ends, the NOTIFYs go nowhere
    run2 = await finish_run(platform, await queued_run(t), RunStatus.CANCELLED)
    await asyncio.sleep(0.5)
    assert len(receiver.got("restart")) == 2
    # two processes come up at once (both scan on start, both deliver)
    second, third = await Tasks(platform).start(), await Tasks(platform, leader=False).start()
    try:
        await eventually(lambda: len(receiver.got("restart")) == 4)
        run3 = await finish_run(platform, await queued_run(t))
        await eventually(lambda: len(receiver.got("restart")) == 6)
        await asyncio.sleep(1.0)
    finally:
        await second.stop()
        await third.stop()
    ids = Counter(r.json["eventId"] for r in receiver.got("restart"))
    assert set(ids.values()) == {1}, ids
    assert set(ids) == {
        f"wev_{r}_{kind}" for r in (run1.id, run2.id, run3.id) for kind in ("started", "completed")
    }
    assert await WebhookDelivery.filter(run_id__in=[run1.id, run2.id, run3.id]).count() == 6


async def test_recording_is_idempotent_and_ignores_the_past(platform: Platform) -> None:
    t = await make_tenant()
    run = await finish_run(platform, await queued_run(t), RunStatus.ERROR, message="x")
    # a subscription created after the run ended is not sent its events
    late, _ = await subscribe(platform, t, "http://127.0.0.1:9/never")
    assert await delivery.record_runs(platform.db, [run.id]) == 0
    t2 = await make_tenant()
    hook, _ = await subscribe(platform, t2, "http://127.0.0.1:9/never")
    run2 = await queued_run(t2)
    assert await delivery.record_runs(platform.db, [run2.id]) == 0  # queued: nothing yet
    async with platform.db.acquire() as conn:
        await state.transition(conn, run2.id, RunStatus.STARTING)
        await state.transition(conn, run2.id, RunStatus.RUNNING)
    assert await delivery.record_runs(platform.db, [run2.id, run2.id]) == 1
    async with platform.db.acquire() as conn:
        await state.transition(conn, run2.id, RunStatus.ERROR, message="boom")
    results = await asyncio.gather(*(delivery.record_runs(platform.db, [run2.id])
                                     for _ in range(4)))
    assert sum(results) == 2
    rows = await WebhookDelivery.filter(webhook_id=hook.id).order_by("id")
    assert [d.event_type for d in rows] == ["job.run.started", "job.run.completed",
                                            "job.run.errored"]
    assert await WebhookDelivery.filter(webhook_id=late.id).count() == 0
    assert (await Run.get(id=run2.id)).status == RunStatus.ERROR


async def test_test_delivery_is_sent_and_logged(platform: Platform, receiver: Receiver) -> None:
    t = await make_tenant()
    hook, secret = await subscribe(platform, t, receiver.hook("ping"))
    row = await service.send_test_delivery(t.actor(), platform.vault, hook.id)
    assert row.status == "delivered" and row.last_status_code == 200
    [got] = receiver.got("ping")
    assert got.json["eventType"] == "webhook.test" and got.json["eventId"] == row.event_id
    assert payloads.verify(secret, got.body, got.headers["Authorization"])
    receiver.program("ping", 404)
    row = await service.send_test_delivery(t.actor(), platform.vault, hook.id)
    assert row.status == "failed" and row.last_status_code == 404
    page = await service.list_deliveries(t.actor(), hook.id)
    assert page.total == 2 and [d.status for d in page.deliveries] == ["failed", "delivered"]
