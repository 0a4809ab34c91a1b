"""IDE sessions (read side; starting and stopping them belongs to the IDE broker)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from graph.relay import Node
from graph.rows import Row, backed_by, column, relation

if TYPE_CHECKING:
    from graph.types.account import User
    from graph.types.project import Project


class IdeSessionRow(Row):
    TYPE = "IdeSession"
    KIND = "ide_session"

    state = column("state")
    failure_reason = column("failure_reason")
    last_activity_at = column("last_activity_at")
    started_at = column("started_at")
    stopped_at = column("stopped_at")
    created_at = column("created_at")

    user = relation("user", "user_id")
    project = relation("project", "project_id")


_ProjectT = Annotated["Project", strawberry.lazy("graph.types.project")]
_UserT = Annotated["User", strawberry.lazy("graph.types.account")]


@strawberry.type(description="One user's develop server for one project.")
@backed_by(IdeSessionRow)
class IdeSession(Node):
    database_id: int
    state: str = strawberry.field(description="pending, ready, stopping, stopped or failed.")
    failure_reason: str | None
    user: _UserT | None
    project: _ProjectT
    last_activity_at: datetime | None
    started_at: datetime | None
    stopped_at: datetime | None
    created_at: datetime
