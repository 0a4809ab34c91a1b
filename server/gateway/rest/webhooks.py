"""dbt Cloud's v3 webhook routes: ``/api/v3/accounts/{account_id}/webhooks/...``.

=======  ===============================================  ==========================
GET      subscriptions                                    list
POST     subscriptions                                    create (answers the secret)
GET      subscription/{id}                                one (with ``hmac_secret``)
PUT      subscription/{id}                                update (POST is accepted too)
DELETE   subscription/{id}                                delete
GET      subscription/{id}/test                           send a test event now (or POST)
GET      subscription/{id}/deliveries                     the delivery log (Kiln's own)
=======  ===============================================  ==========================

Ids are dbt Cloud's ``wsu_<n>`` strings; a bare ``<n>`` is accepted too.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.gateway.app import PLATFORM
from server.gateway.rest import envelope
from server.gateway.rest.auth import endpoint
from server.gateway.rest.params import json_body, page_params, query_int, query_str
from server.gateway.rest.serialize import ts
from server.models import Webhook, WebhookDelivery
from server.services.actor import Actor
from server.services.errors import DomainError, NotFound
from server.webhooks import payloads, service

FIELDS = {"clientUrl": "client_url", "eventTypes": "event_types", "jobIds": "job_ids"}
_BODY_FIELDS = ("name", "description", "client_url", "event_types", "job_ids", "active")


def subscription_json(hook: Webhook, secret: str, last_code: int | None) -> dict[str, Any]:
    return {
        "id": payloads.subscription_id(hook.id),
        "account_identifier": f"act_{hook.account_id}",  # type: ignore[attr-defined]
        "account_id": hook.account_id,  # type: ignore[attr-defined]
        "name": hook.name,
        "description": hook.description,
        "client_url": hook.url,
        "event_types": list(hook.event_types or []),
        "job_ids": [str(j) for j in hook.job_ids or []],
        "hmac_secret": secret,
        "active": hook.active,
        "http_status_code": str(last_code) if last_code is not None else None,
        "created_at": ts(hook.created_at),
        "updated_at": ts(hook.updated_at),
    }


def delivery_json(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "webhook_id": payloads.subscription_id(d.webhook_id),  # type: ignore[attr-defined]
        "event_id": d.event_id,
        "event_type": d.event_type,
        "run_id": d.run_id,  # type: ignore[attr-defined]
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": ts(d.next_attempt_at),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": ts(d.created_at),
        "delivered_at": ts(d.delivered_at),
        "payload": d.payload,
    }


def _hook_id(request: web.Request) -> int:
    pk = payloads.parse_subscription_id(request.match_info.get("webhook_id", ""))
    if pk is None:
        raise NotFound("webhook subscription not found")
    return pk


async def _present(request: web.Request, actor: Actor, hooks: list[Webhook]) -> list[dict]:
    vault = request.app[PLATFORM].vault
    codes = await service.last_status_codes(actor, [h.id for h in hooks])
    return [subscription_json(h, service.secret_of(h, vault), codes.get(h.id)) for h in hooks]


def _values(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in _BODY_FIELDS if k in doc and doc[k] is not None}


@endpoint
async def list_subscriptions(request: web.Request, actor: Actor) -> web.Response:
    hooks = await service.list_webhooks(actor)
    data = await _present(request, actor, hooks)
    extra = envelope.page_extra({"account_id": actor.account_id}, "id", len(data), len(data))
    return envelope.ok(data, extra=extra)


@endpoint
async def create_subscription(request: web.Request, actor: Actor) -> web.Response:
    doc = await json_body(request)
    try:
        hook = await service.create_webhook(actor, request.app[PLATFORM].vault, _values(doc))
    except DomainError as exc:
        return envelope.domain_error(exc, FIELDS)
    [data] = await _present(request, actor, [hook])
    return envelope.ok(data, status=201)


@endpoint
async def get_subscription(request: web.Request, actor: Actor) -> web.Response:
    hook = await service.get_webhook(actor, _hook_id(request))
    [data] = await _present(request, actor, [hook])
    return envelope.ok(data)


@endpoint
async def update_subscription(request: web.Request, actor: Actor) -> web.Response:
    webhook_id = _hook_id(request)
    await service.get_webhook(actor, webhook_id)  # 404 before 400
    doc = await json_body(request)
    try:
        hook = await service.update_webhook(actor, webhook_id, _values(doc))
    except DomainError as exc:
        return envelope.domain_error(exc, FIELDS)
    [data] = await _present(request, actor, [hook])
    return envelope.ok(data)


@endpoint
async def delete_subscription(request: web.Request, actor: Actor) -> web.Response:
    webhook_id = _hook_id(request)
    await service.delete_webhook(actor, webhook_id)
    return envelope.ok({"id": payloads.subscription_id(webhook_id), "deleted": True})


@endpoint
async def test_subscription(request: web.Request, actor: Actor) -> web.Response:
    row = await service.send_test_delivery(actor, request.app[PLATFORM].vault, _hook_id(request))
    return envelope.ok(
        {
            "verification_error": row.last_error,
            "verification_status_code": (
                str(row.last_status_code) if row.last_status_code is not None else None
            ),
            "delivery": delivery_json(row),
        }
    )


@endpoint
async def list_deliveries(request: web.Request, actor: Actor) -> web.Response:
    limit, offset = page_params(request, service.MAX_PAGE)
    status = query_str(request, "status", "") or None
    run_id = query_int(request, "run_id")
    page = await service.list_deliveries(
        actor, _hook_id(request), status=status, run_id=run_id, limit=limit, offset=offset
    )
    data = [delivery_json(d) for d in page.deliveries]
    filters: dict[str, Any] = {"limit": limit, "offset": offset}
    if status:
        filters["status"] = status
    if run_id:
        filters["run_id"] = run_id
    return envelope.ok(
        data, extra=envelope.page_extra(filters, "-created_at", len(data), page.total)
    )


ROUTES = [
    ("GET", "/webhooks/subscriptions", list_subscriptions),
    ("POST", "/webhooks/subscriptions", create_subscription),
    ("GET", "/webhooks/subscription/{webhook_id}", get_subscription),
    ("PUT", "/webhooks/subscription/{webhook_id}", update_subscription),
    ("POST", "/webhooks/subscription/{webhook_id}", update_subscription),
    ("DELETE", "/webhooks/subscription/{webhook_id}", delete_subscription),
    ("GET", "/webhooks/subscription/{webhook_id}/test", test_subscription),
    ("POST", "/webhooks/subscription/{webhook_id}/test", test_subscription),
    ("GET", "/webhooks/subscription/{webhook_id}/deliveries", list_deliveries),
]
