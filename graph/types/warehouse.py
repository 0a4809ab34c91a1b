"""Warehouse connections and credentials. Secret values are never readable."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from graph.relay import Node
from graph.rows import Row, backed_by, column, computed, relation
from server.services.credentials import secret_names

if TYPE_CHECKING:
    from graph.types.account import User
    from graph.types.project import Project


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class ConnectionRow(Row):
    TYPE = "Connection"
    KIND = "connection"

    name = column("name")
    adapter_type = column("adapter_type")
    created_at = column("created_at")
    updated_at = column("updated_at")

    @computed("details")
    def details(self) -> Any:
        return _json(self["details"])


class CredentialsRow(Row):
    TYPE = "Credentials"
    KIND = "credentials"

    name = column("name")
    adapter_type = column("adapter_type")
    created_at = column("created_at")
    updated_at = column("updated_at")

    project = relation("project", "project_id")
    user = relation("user", "user_id")

    @computed("fields_json")
    def fields(self) -> Any:
        return _json(self["fields_json"])

    @computed("secrets")
    def secret_fields(self) -> list[str]:
        # the ciphertext is read only to list which fields it holds
        return secret_names(self._l.vault, self["secrets"])


_ProjectT = Annotated["Project", strawberry.lazy("graph.types.project")]
_UserT = Annotated["User", strawberry.lazy("graph.types.account")]


@strawberry.type(name="Connection", description="A warehouse: adapter type and non-secret details.")
@backed_by(ConnectionRow)
class WarehouseConnection(Node):
    database_id: int
    name: str
    adapter_type: str
    details: JSON = strawberry.field(description="host, port, database, path...: never secrets.")
    created_at: datetime
    updated_at: datetime


@strawberry.type(description="Who dbt connects as. Secret fields are write-only.")
@backed_by(CredentialsRow)
class Credentials(Node):
    database_id: int
    name: str
    adapter_type: str
    project: _ProjectT
    user: _UserT | None = strawberry.field(
        description="Set for a developer's own development credentials."
    )
    fields: JSON = strawberry.field(description="The non-secret fields (schema, user...).")
    secret_fields: list[str] = strawberry.field(
        description="Which secret fields are set; their values are never returned."
    )
    created_at: datetime
    updated_at: datetime
