"""Webhook subscriptions over GraphQL: create (secret once), update, test delivery, log, delete."""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.graphql.conftest import gid, token_for

CREATE = """mutation($i: CreateWebhookInput!) { createWebhook(input: $i) {
  webhook { id name clientUrl eventTypes jobIds active } secret errors { field message } } }"""
TEST = """mutation($id: ID!) { testWebhook(id: $id) {
  delivery { eventType status attempts lastStatusCode } errors { message } } }"""
LOG = """query($id: ID) { webhookDeliveries(webhookId: $id) { totalCount
  deliveries { eventType status lastStatusCode } } }"""


async def test_webhook_subscription_lifecycle(api, tenant) -> None:
    received: list[tuple[bytes, str]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers.get("Authorization", "")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    receiver = TestServer(app)
    await receiver.start_server()
    try:
        url = str(receiver.make_url("/hook"))
        made = await api.mutate(
            CREATE,
            {
                "i": {
                    "name": "ci",
                    "clientUrl": url,
                    "eventTypes": ["job.run.completed"],
                    "jobIds": [gid("Job", tenant.job.id)],
                }
            },
            token=tenant.token,
        )
        assert made["errors"] == [] and len(made["secret"]) >= 32
        hook = made["webhook"]
        assert hook["jobIds"] == [gid("Job", tenant.job.id)] and hook["active"]

        sent = await api.mutate(TEST, {"id": hook["id"]}, token=tenant.token)
        assert sent["delivery"] == {
            "eventType": "webhook.test",
            "status": "delivered",
            "attempts": 1,
            "lastStatusCode": 200,
        }
        body, signature = received[-1]
        expected = hmac.new(made["secret"].encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(signature, expected)

        log = await api.data(LOG, {"id": hook["id"]}, token=tenant.token)
        assert log["webhookDeliveries"]["totalCount"] == 1

        bad = await api.mutate(
            CREATE,
            {"i": {"name": "x", "clientUrl": "ftp://nope", "eventTypes": ["job.run.completed"]}},
            token=tenant.token,
        )
        assert bad["webhook"] is None and bad["errors"][0]["field"] == "clientUrl"
        viewer = await token_for(tenant, "viewer")
        refused = await api.mutate(TEST, {"id": hook["id"]}, token=viewer)
        assert refused["delivery"] is None and refused["errors"]

        gone = await api.mutate(
            """mutation($id: ID!) { deleteWebhook(id: $id) {
            deletedId errors { message } } }""",
            {"id": hook["id"]},
            token=tenant.token,
        )
        assert gone["deletedId"] == hook["id"]
        listed = await api.data("{ webhooks { id } }", token=tenant.token)
        assert listed["webhooks"] == []
    finally:
        await receiver.close()
