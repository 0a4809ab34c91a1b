"""``/api/v3/accounts/{id}/webhooks/...``: subscriptions, test delivery, delivery log, errors."""

from __future__ import annotations

import aiohttp

from server.platform import Platform
from server.services import accounts
from server.webhooks import payloads
from tests.factories import make_tenant
from tests.rest.conftest import Api, Gateway
from tests.webhooks.conftest import Receiver


def v3(account_id: int) -> str:
    return f"/api/v3/accounts/{account_id}/webhooks"


async def test_subscription_lifecycle(gateway: Gateway, receiver: Receiver,
                                      platform: Platform) -> None:
    t = await make_tenant()
    async with aiohttp.ClientSession() as session:
        api = Api(gateway.url, session)
        body = {
            "name": "Notify ops",
            "description": "job runs",
            "client_url": receiver.hook("v3"),
            "event_types": ["job.run.completed", "job.run.started"],
            "job_ids": [str(t.job.id)],
            "active": True,
        }
        r = await api.post(v3(t.account.id) + "/subscriptions", t.token, body=body)
        assert r.status == 201, r.json
        sub = r.data
        assert sub["id"].startswith("wsu_") and len(sub["hmac_secret"]) == 64
        assert sub["event_types"] == ["job.run.started", "job.run.completed"]
        assert sub["job_ids"] == [str(t.job.id)] and sub["client_url"] == body["client_url"]
        sid = sub["id"]
        r = await api.get(v3(t.account.id) + "/subscriptions/", t.token)
        assert [s["id"] for s in r.data] == [sid]
        r = await api.get(f"{v3(t.account.id)}/subscription/{sid}", t.token)
        assert r.data["hmac_secret"] == sub["hmac_secret"]
        r = await api.call("PUT", f"{v3(t.account.id)}/subscription/{sid}/", t.token,
                           body={"name": "Renamed", "active": False, "job_ids": []})
        assert r.data["name"] == "Renamed" and r.data["active"] is False
        assert r.data["job_ids"] == []
        # the bare number works as an id too
        r = await api.get(f"{v3(t.account.id)}/subscription/{sid[4:]}", t.token)
        assert r.data["id"] == sid
        r = await api.get(f"{v3(t.account.id)}/subscription/{sid}/test", t.token)
        assert r.status == 200 and r.data["verification_status_code"] == "200"
        [got] = receiver.got("v3")
        assert payloads.verify(sub["hmac_secret"], got.body, got.headers["Authorization"])
        r = await api.get(f"{v3(t.account.id)}/subscription/{sid}/deliveries", t.token)
        assert r.json["extra"]["pagination"]["total_count"] == 1
        assert r.data[0]["event_type"] == "webhook.test" and r.data[0]["status"] == "delivered"
        r = await api.get(f"{v3(t.account.id)}/subscriptions", t.token)
        assert r.data[0]["http_status_code"] == "200"
        r = await api.delete(f"{v3(t.account.id)}/subscription/{sid}", t.token)
        assert r.status == 200
        assert (await api.get(f"{v3(t.account.id)}/subscription/{sid}", t.token)).status == 404


async def test_subscription_errors(gateway: Gateway, platform: Platform) -> None:
    t, other = await make_tenant(), await make_tenant()
    viewer = await accounts.create_token(t.account, name="v", role="viewer")
    good = {"name": "x", "client_url": "https://example.invalid/hook",
            "event_types": ["job.run.completed"]}
    async with aiohttp.ClientSession() as session:
        api = Api(gateway.url, session)
        path = v3(t.account.id) + "/subscriptions"
        for body, field in (
            ({**good, "client_url": "ftp://x/y"}, "client_url"),
            ({**good, "client_url": None}, "client_url"),
            ({**good, "event_types": ["job.run.exploded"]}, "event_types"),
            ({**good, "event_types": []}, "event_types"),
            ({**good, "job_ids": [999999999]}, "job_ids"),
            ({**good, "job_ids": [other.job.id]}, "job_ids"),
            ({**good, "job_ids": "all"}, "job_ids"),
            ({**good, "active": "yes"}, "active"),
            ({**good, "name": ""}, "name"),
        ):
            r = await api.post(path, t.token, body=body)
            assert r.status == 400, (body, r.json)
            assert field in r.json["status"]["user_message"] and field in r.json["data"], r.json
        assert (await api.post(path, t.token, raw=b"nope")).status == 400
        assert (await api.post(path)).status == 401
        assert (await api.get(path, viewer.secret)).status == 403
        assert (await api.post(path, viewer.secret, body=good)).status == 403
        r = await api.post(v3(other.account.id) + "/subscriptions", t.token, body=good)
        assert r.status == 404
        r = await api.post(path, other.token, body=good)
        assert r.status == 404
        mine = (await api.post(path, t.token, body=good)).data["id"]
        for method in ("GET", "PUT", "DELETE"):
            r = await api.call(method, f"{v3(other.account.id)}/subscription/{mine}",
                               other.token, body={})
            assert r.status == 404, method
        r = await api.get(f"{v3(t.account.id)}/subscription/wsu_abc", t.token)
        assert r.status == 404
        r = await api.get(f"{v3(t.account.id)}/subscription/{mine}/deliveries", t.token,
                          params={"status": "lost"})
        assert r.status == 400 and "status" in r.json["data"]
