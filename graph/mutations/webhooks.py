"""Webhook subscriptions and their delivery log over GraphQL.

Thin: the rules (MANAGE_WEBHOOKS, account scoping, URL and event checks,
the encrypted secret) live in :mod:`server.webhooks.service`, shared with
the REST v3 routes. The secret is returned by ``createWebhook`` only, like a
token: store it to verify the ``Authorization`` signature of deliveries.
"""

from __future__ import annotations

from datetime import datetime

import strawberry

from graph.context import Context
from graph.errors import UserError
from graph.loaders import Loaders
from graph.mutations.common import DeletePayload, provided, run_mutation
from graph.relay import decode_id
from server.ids import to_global_id
from server.models import Webhook as WebhookModel
from server.models import WebhookDelivery as DeliveryModel
from server.webhooks import service


@strawberry.type(description="A subscription: Kiln POSTs run events to its URL, signed.")
class Webhook:
    id: strawberry.ID
    name: str
    description: str
    client_url: str
    event_types: list[str]
    job_ids: list[strawberry.ID] = strawberry.field(description="Empty: every job.")
    active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, hook: WebhookModel) -> Webhook:
        return cls(
            id=strawberry.ID(to_global_id("Webhook", hook.id)),
            name=hook.name,
            description=hook.description,
            client_url=hook.url,
            event_types=list(hook.event_types or []),
            job_ids=[strawberry.ID(to_global_id("Job", j)) for j in hook.job_ids or []],
            active=hook.active,
            created_at=hook.created_at,
            updated_at=hook.updated_at,
        )


@strawberry.type(description="One event sent (or being retried) to one subscription.")
class WebhookDelivery:
    id: strawberry.ID
    webhook_id: strawberry.ID
    event_id: str
    event_type: str
    status: str = strawberry.field(description="pending, delivered or failed.")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None

    @classmethod
    def of(cls, row: DeliveryModel) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(to_global_id("WebhookDelivery", row.id)),
            webhook_id=strawberry.ID(to_global_id("Webhook", row.webhook_id)),  # type: ignore[attr-defined]
            event_id=row.event_id,
            event_type=row.event_type,
            status=row.status,
            attempts=row.attempts,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            next_attempt_at=row.next_attempt_at,
        )


@strawberry.type
class WebhookDeliveryPage:
    deliveries: list[WebhookDelivery]
    total_count: int


@strawberry.input
class CreateWebhookInput:
    name: str
    client_url: str
    event_types: list[str] = strawberry.field(
        description="job.run.started, job.run.completed, job.run.errored."
    )
    job_ids: list[strawberry.ID] | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET


@strawberry.input
class UpdateWebhookInput:
    name: str | None = strawberry.UNSET
    client_url: str | None = strawberry.UNSET
    event_types: list[str] | None = strawberry.UNSET
    job_ids: list[strawberry.ID] | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET


@strawberry.type
class WebhookPayload:
    webhook: Webhook | None = None
    secret: str | None = strawberry.field(
        default=None, description="The HMAC key; returned once, by createWebhook."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookDeliveryPayload:
    delivery: WebhookDelivery | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


def _values(inp: CreateWebhookInput | UpdateWebhookInput) -> dict[str, object]:
    values = provided(inp)
    if values.get("job_ids") is not None:
        values["job_ids"] = [decode_id(j, "Job", "jobIds") for j in values["job_ids"]]  # type: ignore[union-attr]
    return {k: v for k, v in values.items() if v is not None or k == "job_ids"}


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(description="Subscribe a URL to run events.")
    async def create_webhook(
        self, info: strawberry.Info, input: CreateWebhookInput
    ) -> WebhookPayload:
        async def op(ld: Loaders) -> WebhookPayload:
            hook = await service.create_webhook(ld.actor, ld.vault, _values(input))
            return WebhookPayload(
                webhook=Webhook.of(hook), secret=service.secret_of(hook, ld.vault)
            )

        return await run_mutation(info, WebhookPayload, op)

    @strawberry.mutation
    async def update_webhook(
        self, info: strawberry.Info, id: strawberry.ID, input: UpdateWebhookInput
    ) -> WebhookPayload:
        async def op(ld: Loaders) -> WebhookPayload:
            hook = await service.update_webhook(ld.actor, decode_id(id, "Webhook"), _values(input))
            return WebhookPayload(webhook=Webhook.of(hook))

        return await run_mutation(info, WebhookPayload, op)

    @strawberry.mutation(description="Delete a subscription and its delivery log.")
    async def delete_webhook(self, info: strawberry.Info, id: strawberry.ID) -> DeletePayload:
        async def op(ld: Loaders) -> DeletePayload:
            await service.delete_webhook(ld.actor, decode_id(id, "Webhook"))
            return DeletePayload(deleted_id=id)

        return await run_mutation(info, DeletePayload, op)

    @strawberry.mutation(description="Send a webhook.test event now and log the attempt.")
    async def test_webhook(
        self, info: strawberry.Info, id: strawberry.ID
    ) -> WebhookDeliveryPayload:
        async def op(ld: Loaders) -> WebhookDeliveryPayload:
            row = await service.send_test_delivery(ld.actor, ld.vault, decode_id(id, "Webhook"))
            return WebhookDeliveryPayload(delivery=WebhookDelivery.of(row))

        return await run_mutation(info, WebhookDeliveryPayload, op)


@strawberry.type
class WebhookQueries:
    @strawberry.field(description="The account's webhook subscriptions.")
    async def webhooks(self, info: strawberry.Info) -> list[Webhook]:
        ctx: Context = info.context
        ld = await ctx.loaders(None)
        return [Webhook.of(h) for h in await service.list_webhooks(ld.actor)]

    @strawberry.field(description="The delivery log, newest first.")
    async def webhook_deliveries(
        self,
        info: strawberry.Info,
        webhook_id: strawberry.ID | None = None,
        status: str | None = None,
        first: int = 50,
        offset: int = 0,
    ) -> WebhookDeliveryPage:
        ctx: Context = info.context
        ld = await ctx.loaders(None)
        page = await service.list_deliveries(
            ld.actor,
            decode_id(webhook_id, "Webhook", "webhookId") if webhook_id else None,
            status=status,
            limit=first,
            offset=offset,
        )
        return WebhookDeliveryPage(
            deliveries=[WebhookDelivery.of(d) for d in page.deliveries], total_count=page.total
        )
