"""The Subscription root (live logs, runs, IDE sessions) and the ``run.logs`` connection.

Every subscription resolver is a coroutine that authorizes FIRST, with the
subscriber's own context and exactly the checks a query makes
(``queries.visible``: READ, the account, not deleted, per-role visibility;
another account's object is "not found"), and only then returns its event
stream. So a refusal is an
``error`` message at subscribe time, and the transport's shared execution
(:mod:`server.gateway.graphql_ws`) never needs a per-subscriber context.

The streams come from the process's hubs (:mod:`server.logs.hub`): one
LISTEN connection, one read or load per event, the same object for every
subscriber. Objects loaded for run and IDE events use fresh loaders with the
least privilege that can see them (a viewer of the account; the session's
own user for IDE sessions), so what a shared execution sends never depends
on which subscriber happened to create its group.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import strawberry

from graph.relay import ConnectionRow, PageInfo, decode_id, decode_optional
from graph.types.ide import IdeSession, IdeSessionRow
from graph.types.run import Run, RunRow
from server.logs.hub import IdeEvent, hubs
from server.logs.read import LogLine as LogLineRow
from server.logs.read import check_visible, log_reader
from server.runs.state import RunEvent
from server.services.actor import Actor
from server.services.errors import NotFound, ValidationFailed

if TYPE_CHECKING:
    from graph.context import Context
    from server.platform import Platform

RESYNC_WINDOW = timedelta(minutes=2)


@strawberry.type(description="One line of a run's log (dbt's JSON events, one per line).")
class LogLine:
    seq: int = strawberry.field(description="1-based, gap-free within the run.")
    step: int | None = strawberry.field(description="The step's index; null before the first.")
    ts: datetime
    level: str = strawberry.field(description="debug, info, warn or error.")
    message: str
    event_name: str | None = strawberry.field(description="dbt's event name (info.name).")
    node_id: str | None = strawberry.field(description="The node's unique id, on node events.")


@strawberry.type(description="New lines of a run; the last batch has done = true.")
class RunLogBatch:
    cursor: int = strawberry.field(
        description="The seq of the last line delivered so far: pass it as `after` to resume."
    )
    lines: list[LogLine]
    done: bool = strawberry.field(description="The run is finished and every line was sent.")


# -- helpers -----------------------------------------------------------------------


def _ctx(info: strawberry.Info) -> Context:
    return info.context


async def _actor(info: strawberry.Info) -> Actor:
    return (await _ctx(info).loaders()).actor


async def _visible(info: strawberry.Info, kind: str, pk: int, what: str) -> Actor:
    """The caller, if they may read the object (the scoped queries' rules); else NotFound."""
    actor = await _actor(info)
    await check_visible(_ctx(info).platform.db, actor, kind, pk, what)
    return actor


class _SharedLoads:
    """Per platform, identity-stable load functions (the hub loads once per function)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    async def run(self, ev: RunEvent) -> RunRow | None:
        from graph.loaders import Loaders

        loaders = Loaders(Actor(ev.account, "viewer", kind="system"), self.platform)
        return await loaders.fresh("run", ev.run)  # type: ignore[return-value]

    async def ide(self, ev: IdeEvent) -> IdeSessionRow | None:
        from graph.loaders import Loaders

        actor = Actor(ev.account, "viewer", user_id=ev.user, kind="system")
        loaders = Loaders(actor, self.platform)
        return await loaders.fresh("ide_session", ev.session)  # type: ignore[return-value]


def _shared(platform: Platform) -> _SharedLoads:
    s = platform.services.get("graph_shared_loads")
    if s is None:
        s = platform.services["graph_shared_loads"] = _SharedLoads(platform)
    return s


def _resync_runs(
    platform: Platform, account_id: int, column: str | None, value: int | None
) -> Callable[[], Awaitable[list[RunEvent]]]:
    """After a LISTEN reconnect: events for the runs that may have changed meanwhile."""

    async def resync() -> list[RunEvent]:
        cond = f" AND {column} = $3" if column else ""
        args: list[Any] = [account_id, datetime.now().astimezone() - RESYNC_WINDOW]
        if column:
            args.append(value)
        async with platform.db.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, account_id, job_id, project_id, environment_id, status FROM run"
                " WHERE account_id = $1 AND (status < 10 OR finished_at > $2)"
                f"{cond} ORDER BY id LIMIT 200",
                *args,
            )
        return [RunEvent.of(r, "status") for r in rows]

    return resync


# -- the Subscription root -----------------------------------------------------------


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="A run's log: what is stored after `after` first, then live batches, with "
        "no gap or duplicate at the seam; completes after the last line of a finished run."
    )
    async def run_logs(
        self, info: strawberry.Info, run_id: strawberry.ID, after: int | None = None
    ) -> AsyncIterator[RunLogBatch]:
        pk = decode_id(run_id, "Run", "runId")
        if after is not None and after < 0:
            raise ValidationFailed("after must be 0 or more", field="after")
        actor = await _visible(info, "run", pk, "run")
        platform = _ctx(info).platform
        run = await log_reader(platform).info(pk, actor.account_id)
        if run is None:
            raise NotFound("run not found")
        return (await hubs(platform)).logs.subscribe(run, after)  # type: ignore[return-value]

    @strawberry.subscription(description="The run, again on every status or step change.")
    async def run_updated(self, info: strawberry.Info, run_id: strawberry.ID) -> AsyncIterator[Run]:
        pk = decode_id(run_id, "Run", "runId")
        actor = await _visible(info, "run", pk, "run")
        platform = _ctx(info).platform
        h = await hubs(platform)
        account = actor.account_id
        return h.runs.subscribe(  # type: ignore[return-value]
            ("run", pk), _shared(platform).run, _resync_one(platform, account, pk)
        )

    @strawberry.subscription(
        description="Runs of a job, environment or project (or the whole account), each time "
        "one is created or changes status or step: for dashboards."
    )
    async def runs_updated(
        self,
        info: strawberry.Info,
        job_id: strawberry.ID | None = None,
        environment_id: strawberry.ID | None = None,
        project_id: strawberry.ID | None = None,
    ) -> AsyncIterator[Run]:
        given = [
            (kind, decode_optional(gid, type_name, arg))
            for kind, gid, type_name, arg in (
                ("job", job_id, "Job", "jobId"),
                ("environment", environment_id, "Environment", "environmentId"),
                ("project", project_id, "Project", "projectId"),
            )
            if gid is not None
        ]
        if len(given) > 1:
            raise ValidationFailed("give at most one of jobId, environmentId, projectId")
        actor = await _actor(info)
        platform = _ctx(info).platform
        account = actor.account_id
        if given:
            kind, pk = given[0]
            await _visible(info, kind, pk, kind)  # type: ignore[arg-type]
            key: tuple[str, int] = (kind, pk)  # type: ignore[assignment]
            resync = _resync_runs(platform, account, f"{kind}_id", pk)
        else:
            from server.services.permissions import Action

            actor.require(Action.READ)
            key = ("account", account)
            resync = _resync_runs(platform, account, None, None)
        h = await hubs(platform)
        return h.runs.subscribe(key, _shared(platform).run, resync)  # type: ignore[return-value]

    @strawberry.subscription(description="An IDE session, again on every state change.")
    async def ide_session_updated(
        self, info: strawberry.Info, session_id: strawberry.ID
    ) -> AsyncIterator[IdeSession]:
        pk = decode_id(session_id, "IdeSession", "sessionId")
        await _visible(info, "ide_session", pk, "IDE session")
        h = await hubs(_ctx(info).platform)
        shared = _shared(_ctx(info).platform)
        return h.ide.subscribe(("ide", pk), shared.ide)  # type: ignore[return-value]


def _resync_one(
    platform: Platform, account_id: int, run_id: int
) -> Callable[[], Awaitable[list[RunEvent]]]:
    async def resync() -> list[RunEvent]:
        async with platform.db.acquire() as conn:
            r = await conn.fetchrow(
                "SELECT id, account_id, job_id, project_id, environment_id, status FROM run"
                " WHERE id = $1 AND account_id = $2",
                run_id,
                account_id,
            )
        return [RunEvent.of(r, "status")] if r is not None else []

    return resync


# -- run.logs: paging old logs -------------------------------------------------------

@strawberry.type(description="A line of a run's log and its cursor.")
class LogLineEdge:
    cursor: str
    node: LogLine


@strawberry.type(description="A page of a run's log lines, in seq order.")
class LogLineConnection:
    edges: list[LogLineEdge]
    page_info: PageInfo

    @strawberry.field(description="How many lines match, over all pages (a separate query).")
    async def total_count(self) -> int:
        return await self._count()  # type: ignore[attr-defined]


def encode_log_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"log:{seq}".encode()).decode().rstrip("=")


def decode_log_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, _, seq = raw.partition(":")
        n = int(seq)
        if tag != "log" or n < 0:
            raise ValueError(cursor)
        return n
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed("invalid cursor", field="after") from None


async def run_logs_connection(
    platform: Platform,
    run_id: int,
    account_id: int,
    first: int | None = 100,
    after: str | None = None,
    step: int | None = None,
    level: str | None = None,
) -> ConnectionRow:
    """``run.logs`` of a run the caller already sees: lines in seq order, from the table or
    the archive alike. ``level`` is a minimum severity (``warn``: warn and error lines)."""
    reader = log_reader(platform)
    start = decode_log_cursor(after) if after else 0
    page = await reader.page(
        run_id,
        account_id,
        first=100 if first is None else first,
        after=start,
        step=step,
        level=level,
    )

    async def count() -> int:
        return await reader.count(run_id, account_id, step=step, level=level)

    return ConnectionRow(
        page.lines,
        lambda ln: encode_log_cursor(ln.seq),
        has_next=page.has_next,
        has_previous=page.has_previous,
        count=count,
    )


__all__ = [
    "LogLine",
    "LogLineConnection",
    "LogLineEdge",
    "LogLineRow",
    "RunLogBatch",
    "Subscription",
    "run_logs_connection",
]
