"""The audit trail: one AuditEvent row per mutation (who, what, which object).

Services call :func:`record` inside the transaction of the change they make,
so an event exists exactly when the change does.
"""

from __future__ import annotations

from typing import Any

from server.models import AuditEvent
from server.services.actor import Actor


async def record(
    actor: Actor,
    action: str,
    object_type: str,
    object_id: int | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write one event. ``details`` must never contain secret values."""
    await AuditEvent.create(
        account_id=actor.account_id,
        actor_user_id=actor.user_id,
        actor_token_id=actor.token_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        details=details or {},
    )
