"""Warehouse connections: the adapter type and non-secret details (host, port, database, path).

Secrets never go here: a detail named like a secret (``password``, ``token``...)
is refused and belongs in Credentials. A DuckDB ``path`` names a file on the
server that the run workers write, so, like a project's bundled path, only
the account owner may set one, and it must be absolute. A connection that a live environment
uses cannot be deleted (the environment would silently lose it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from server.models import Connection, Environment
from server.services import audit
from server.services.accounts import check_name
from server.services.actor import Actor
from server.services.errors import Conflict, ValidationFailed
from server.services.permissions import Action
from server.services.validation import check_plain_fields

_ADAPTER = re.compile(r"^[a-z][a-z0-9_]{1,49}$")
FIELDS = {"name", "adapter_type", "details"}


def check_adapter(value: str | None, field: str = "adapterType") -> str:
    value = (value or "").strip().lower()
    if not _ADAPTER.match(value):
        raise ValidationFailed("adapterType must be an adapter name like 'postgres'", field=field)
    return value


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(values) - FIELDS
    if unknown:
        raise ValueError(f"unknown connection fields {unknown}")
    out = dict(values)
    if "name" in out:
        out["name"] = check_name(out["name"])
    if "adapter_type" in out:
        out["adapter_type"] = check_adapter(out["adapter_type"])
    if "details" in out:
        out["details"] = check_plain_fields(out["details"], "details")
    return out


def _check_server_path(actor: Actor, adapter: str, details: Mapping[str, Any] | None) -> None:
    path = (details or {}).get("path")
    if adapter != "duckdb" or path in (None, ":memory:"):
        return
    if actor.role != "owner":
        raise ValidationFailed(
            "only the account owner may point a DuckDB connection at a server file",
            field="details.path",
        )
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise ValidationFailed("a DuckDB path must be an absolute file path", field="details.path")


async def create_connection(actor: Actor, values: Mapping[str, Any]) -> Connection:
    actor.require(Action.EDIT_PROJECTS)
    data = _clean({"name": None, "adapter_type": None, **values})
    _check_server_path(actor, data["adapter_type"], data.get("details"))
    try:
        async with in_transaction():
            conn = await Connection.create(account_id=actor.account_id, **data)
            await audit.record(
                actor, "connection.create", "connection", conn.id, {"name": conn.name}
            )
    except IntegrityError:
        raise Conflict(
            f"a connection named {data['name']!r} already exists", field="name"
        ) from None
    return conn


async def update_connection(
    actor: Actor, connection_id: int, changes: Mapping[str, Any]
) -> Connection:
    actor.require(Action.EDIT_PROJECTS)
    conn = await actor.get(Connection, connection_id, what="connection")
    data = _clean(changes)
    if "details" in data or "adapter_type" in data:
        _check_server_path(
            actor, data.get("adapter_type", conn.adapter_type), data.get("details", conn.details)
        )
    for key, value in data.items():
        setattr(conn, key, value)
    try:
        async with in_transaction():
            await conn.save()
            await audit.record(
                actor, "connection.update", "connection", conn.id, {"fields": sorted(data)}
            )
    except IntegrityError:
        raise Conflict(f"a connection named {conn.name!r} already exists", field="name") from None
    return conn


async def delete_connection(actor: Actor, connection_id: int) -> None:
    actor.require(Action.EDIT_PROJECTS)
    conn = await actor.get(Connection, connection_id, what="connection")
    users = await Environment.filter(
        account_id=actor.account_id, connection_id=conn.id, deleted_at=None
    ).values_list("name", flat=True)
    if users:
        raise Conflict(f"connection is used by environment(s): {', '.join(sorted(users))}")
    async with in_transaction():
        await conn.delete()
        await audit.record(actor, "connection.delete", "connection", connection_id)
