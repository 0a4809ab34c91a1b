"""IDE sessions over GraphQL: start (or resume), stop, and look up your own session.

Thin: the rules (DEVELOP permission, sessions belong to users, another user's
session is "not found") live in :class:`ide_broker.broker.Broker`, reached as
``platform.services["ide_broker"]``. A process without a broker (``kiln
gateway`` behind another one that has it) answers with an ``unavailable``
UserError rather than a 500.
"""

from __future__ import annotations

from typing import Any

import strawberry

from graph.errors import UserError
from graph.loaders import Loaders
from graph.mutations.common import run_mutation
from graph.prefetch import load_one
from graph.relay import decode_id, decode_optional
from graph.types.ide import IdeSession
from server.models import IdeSession as IdeSessionModel
from server.services.errors import DomainError, ValidationFailed


class BrokerUnavailable(DomainError):
    code = "unavailable"


def _broker(loaders: Loaders) -> Any:
    broker = loaders.platform.services.get("ide_broker")
    if broker is None:
        raise BrokerUnavailable("IDE sessions are not served by this process")
    return broker


@strawberry.type
class IdeSessionPayload:
    session: IdeSession | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class IdeMutations:
    @strawberry.mutation(
        description="Start your IDE session for a project, or resume it: a pending or ready "
        "session is returned as it is. Follow pending → ready with ideSessionUpdated."
    )
    async def start_ide_session(
        self, info: strawberry.Info, project_id: strawberry.ID
    ) -> IdeSessionPayload:
        async def op(ld: Loaders) -> IdeSessionPayload:
            pk = decode_id(project_id, "Project", "projectId")
            session = await _broker(ld).start_session(ld.actor, pk)
            return IdeSessionPayload(session=await ld.fresh("ide_session", session.id))  # type: ignore[arg-type]

        return await run_mutation(info, IdeSessionPayload, op)

    @strawberry.mutation(description="Stop your IDE session; its workspace stays.")
    async def stop_ide_session(self, info: strawberry.Info, id: strawberry.ID) -> IdeSessionPayload:
        async def op(ld: Loaders) -> IdeSessionPayload:
            pk = decode_id(id, "IdeSession")
            session = await _broker(ld).stop_session(ld.actor, pk)
            return IdeSessionPayload(session=await ld.fresh("ide_session", session.id))  # type: ignore[arg-type]

        return await run_mutation(info, IdeSessionPayload, op)


@strawberry.type
class IdeQueries:
    @strawberry.field(
        description="Your IDE session: by id, or your session for a project (null if you have "
        "none); give exactly one of id and projectId."
    )
    async def ide_session(
        self,
        info: strawberry.Info,
        id: strawberry.ID | None = None,
        project_id: strawberry.ID | None = None,
    ) -> IdeSession | None:
        if (id is None) == (project_id is None):
            raise ValidationFailed("give exactly one of id and projectId")
        loaders: Loaders = await info.context.loaders()
        actor = loaders.actor
        if actor.user_id is None:  # sessions belong to users; a service token has none
            return None
        # your own only (an admin may reach others' sessions through node(id))
        own = IdeSessionModel.filter(account_id=actor.account_id, user_id=actor.user_id)
        if id is not None:
            own = own.filter(id=decode_id(id, "IdeSession"))
        else:
            own = own.filter(project_id=decode_optional(project_id, "Project", "projectId"))
        pk = await own.first().values_list("id", flat=True)
        if pk is None:
            return None
        return await load_one(info._raw_info, loaders, "ide_session", pk)  # type: ignore[return-value]
