"""Webhook subscriptions and their delivery log: the rules, for REST v3 and GraphQL alike.

Every function takes the :class:`~server.services.actor.Actor` and needs
``MANAGE_WEBHOOKS`` (a subscription's secret is readable by whoever manages
it, as in dbt Cloud). Subscriptions of another account are NotFound. The
HMAC secret is generated here, stored encrypted, and shown by
:func:`secret_of`. Field names in errors are the GraphQL ones (``clientUrl``,
``eventTypes``, ``jobIds``); the REST layer renames them.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from tortoise.transactions import in_transaction

from server import crypto
from server.models import Job, Webhook, WebhookDelivery
from server.services import audit
from server.services.accounts import check_name
from server.services.actor import Actor
from server.services.errors import ValidationFailed
from server.services.permissions import Action
from server.services.validation import check_text
from server.webhooks import delivery, payloads

FIELDS = {"name", "description", "client_url", "event_types", "job_ids", "active"}
DELIVERY_STATUSES = ("pending", "delivered", "failed")
MAX_URL = 2000
MAX_JOBS = 1000
MAX_PAGE = 100


def check_url(url: object) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ValidationFailed("clientUrl is required", field="clientUrl")
    url = url.strip()
    parts = urlsplit(url)
    if len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(
            f"clientUrl must be an http(s) URL of at most {MAX_URL} characters",
            field="clientUrl",
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValidationFailed("clientUrl has an invalid port", field="clientUrl") from None
    return url


def check_event_types(value: object) -> list[str]:
    if not isinstance(value, list | tuple) or not value:
        raise ValidationFailed(
            f"eventTypes must be a non-empty list of {', '.join(payloads.EVENT_TYPES)}",
            field="eventTypes",
        )
    bad = [v for v in value if v not in payloads.EVENT_TYPES]
    if bad:
        raise ValidationFailed(
            f"unknown event type {bad[0]!r} (use {', '.join(payloads.EVENT_TYPES)})",
            field="eventTypes",
        )
    return [t for t in payloads.EVENT_TYPES if t in value]


async def check_job_ids(actor: Actor, value: object) -> list[int]:
    """Job ids (ints or digit strings) of live jobs of the account; empty = every job."""
    if value is None:
        return []
    if not isinstance(value, list | tuple) or len(value) > MAX_JOBS:
        raise ValidationFailed(f"jobIds must be a list of at most {MAX_JOBS} job ids",
                               field="jobIds")
    ids: list[int] = []
    for v in value:
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v.strip())
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 2**63:
            raise ValidationFailed(f"invalid job id {v!r}", field="jobIds")
        ids.append(v)
    ids = sorted(set(ids))
    found = set(
        await actor.scoped(Job)
        .filter(id__in=ids, deleted_at__isnull=True)
        .values_list("id", flat=True)
    )
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationFailed(f"job {missing[0]} not found", field="jobIds")
    return ids


async def _apply(actor: Actor, hook: Webhook, values: Mapping[str, Any]) -> list[str]:
    unknown = set(values) - FIELDS
    if unknown:
        raise ValueError(f"unknown webhook fields {unknown}")
    if "name" in values:
        hook.name = check_name(values["name"])
    if "description" in values:
        hook.description = check_text(values["description"], "description", max_length=10_000)
    if "client_url" in values:
        hook.url = check_url(values["client_url"])
    if "event_types" in values:
        hook.event_types = check_event_types(values["event_types"])
    if "job_ids" in values:
        hook.job_ids = await check_job_ids(actor, values["job_ids"])
    if "active" in values:
        if not isinstance(values["active"], bool):
            raise ValidationFailed("active must be true or false", field="active")
        hook.active = values["active"]
    return sorted(values)


async def list_webhooks(actor: Actor) -> list[Webhook]:
    actor.require(Action.MANAGE_WEBHOOKS)
    return await actor.scoped(Webhook).order_by("id")


async def get_webhook(actor: Actor, webhook_id: int) -> Webhook:
    actor.require(Action.MANAGE_WEBHOOKS)
    return await actor.get(Webhook, webhook_id, what="webhook subscription")


async def create_webhook(actor: Actor, vault: crypto.Vault, values: Mapping[str, Any]) -> Webhook:
    """A new subscription with a fresh secret (read it with :func:`secret_of`)."""
    actor.require(Action.MANAGE_WEBHOOKS)
    for required in ("name", "client_url", "event_types"):
        if values.get(required) is None:
            field = {"client_url": "clientUrl", "event_types": "eventTypes"}.get(required, required)
            raise ValidationFailed(f"{field} is required", field=field)
    hook = Webhook(account_id=actor.account_id, secret=vault.encrypt(secrets.token_hex(32)))
    await _apply(actor, hook, values)
    async with in_transaction():
        await hook.save()
        await audit.record(actor, "webhook.create", "webhook", hook.id, {"name": hook.name})
    return hook


async def update_webhook(actor: Actor, webhook_id: int, changes: Mapping[str, Any]) -> Webhook:
    actor.require(Action.MANAGE_WEBHOOKS)
    hook = await get_webhook(actor, webhook_id)
    changed = await _apply(actor, hook, changes)
    async with in_transaction():
        await hook.save()
        await audit.record(actor, "webhook.update", "webhook", hook.id, {"fields": changed})
    return hook


async def delete_webhook(actor: Actor, webhook_id: int) -> None:
    """Delete the subscription and its delivery log (pending deliveries are dropped)."""
    hook = await get_webhook(actor, webhook_id)
    async with in_transaction():
        await hook.delete()
        await audit.record(actor, "webhook.delete", "webhook", webhook_id)


def secret_of(hook: Webhook, vault: crypto.Vault) -> str:
    return vault.decrypt(hook.secret)


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[WebhookDelivery]
    total: int


async def list_deliveries(
    actor: Actor,
    webhook_id: int | None = None,
    *,
    status: str | None = None,
    run_id: int | None = None,
    limit: int = MAX_PAGE,
    offset: int = 0,
) -> DeliveryPage:
    """The delivery log, newest first, optionally of one subscription, status or run."""
    actor.require(Action.MANAGE_WEBHOOKS)
    q = actor.scoped(WebhookDelivery)
    if webhook_id is not None:
        hook = await get_webhook(actor, webhook_id)
        q = q.filter(webhook_id=hook.id)
    if status is not None:
        if status not in DELIVERY_STATUSES:
            raise ValidationFailed(
                f"status must be one of {', '.join(DELIVERY_STATUSES)}", field="status"
            )
        q = q.filter(status=status)
    if run_id is not None:
        q = q.filter(run_id=run_id)
    if not 0 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 0 and {MAX_PAGE}", field="limit")
    if not 0 <= offset < 2**31:
        raise ValidationFailed("offset must not be negative", field="offset")
    total = await q.count()
    rows = await q.order_by("-created_at", "-id").offset(offset).limit(limit) if limit else []
    return DeliveryPage(list(rows), total)


async def send_test_delivery(
    actor: Actor,
    vault: crypto.Vault,
    webhook_id: int,
    *,
    session: aiohttp.ClientSession | None = None,
    timeout: float = delivery.TIMEOUT,
) -> WebhookDelivery:
    """Send a ``webhook.test`` event now, once, and log it like any delivery."""
    hook = await get_webhook(actor, webhook_id)
    now = datetime.now(UTC)
    eid = f"wev_test_{uuid.uuid4().hex}"
    body = payloads.build_test(
        webhook_id=hook.id, webhook_name=hook.name, account_id=actor.account_id, event_id=eid,
        at=now,
    )
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        attempt = await delivery.send(session, hook.url, body, secret_of(hook, vault),
                                      timeout=timeout)
    finally:
        if own:
            await session.close()
    row = await WebhookDelivery.create(
        account_id=actor.account_id,
        webhook_id=hook.id,
        event_id=eid,
        event_type=payloads.TEST,
        payload=body,
        status="delivered" if attempt.ok else "failed",
        attempts=1,
        last_status_code=attempt.status_code,
        last_error=attempt.error,
        delivered_at=datetime.now(UTC) if attempt.ok else None,
    )
    await audit.record(actor, "webhook.test", "webhook", hook.id, {"ok": attempt.ok})
    return row


async def last_status_codes(actor: Actor, webhook_ids: Sequence[int]) -> dict[int, int | None]:
    """The HTTP status of each subscription's latest attempted delivery (None: none yet)."""
    actor.require(Action.MANAGE_WEBHOOKS)
    out: dict[int, int | None] = {}
    for wid in webhook_ids:
        row = (
            await actor.scoped(WebhookDelivery)
            .filter(webhook_id=wid, attempts__gt=0)
            .order_by("-id")
            .first()
        )
        out[wid] = row.last_status_code if row is not None else None
    return out
