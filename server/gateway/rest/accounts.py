"""``/api/v2/accounts/``: the accounts the token reaches (one: the token's own)."""

from __future__ import annotations

from aiohttp import web

from server.gateway.rest import envelope, serialize
from server.gateway.rest.auth import endpoint, principal
from server.services import dbt_cloud
from server.services.actor import Actor


async def list_accounts(request: web.Request) -> web.Response:
    who = await principal(request)
    rows = await dbt_cloud.accounts_of(who)
    data = [serialize.account(a) for a in rows]
    return envelope.ok(data, extra=envelope.page_extra({}, "id", len(data), len(data)))


@endpoint
async def get_account(request: web.Request, actor: Actor) -> web.Response:
    return envelope.ok(serialize.account(await dbt_cloud.get_account(actor)))
