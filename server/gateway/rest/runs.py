"""``/api/v2/accounts/{account_id}/runs/...``: list, get, cancel, retry, artifacts."""

from __future__ import annotations

from aiohttp import web

from server.gateway.app import PLATFORM
from server.gateway.artifacts import send_download
from server.gateway.rest import envelope
from server.gateway.rest.auth import endpoint
from server.gateway.rest.common import include_related, present_runs
from server.gateway.rest.params import page_params, path_id, query_int, query_ints, query_str
from server.models import Run, RunStatus
from server.services import artifacts, dbt_cloud, run_actions
from server.services.actor import Actor

STATUS_CODES = {int(s) for s in RunStatus}


@endpoint
async def list_runs(request: web.Request, actor: Actor) -> web.Response:
    job_id = query_int(request, "job_definition_id") or query_int(request, "job_id")
    environment_id = query_int(request, "environment_id")
    project_id = query_int(request, "project_id")
    statuses: list[int] | None = None
    status = query_int(request, "status", low=0)
    if status is not None:
        if status not in STATUS_CODES:
            raise envelope.bad_request(f"must be one of {sorted(STATUS_CODES)}", "status")
        statuses = [status]
    if request.query.get("status__in"):
        wanted = query_ints(request, "status__in", STATUS_CODES)
        statuses = wanted if statuses is None else [s for s in statuses if s in wanted]
    order_by = query_str(request, "order_by", "id")
    limit, offset = page_params(request, dbt_cloud.MAX_LIMIT)
    page = await dbt_cloud.list_runs(
        actor,
        job_id=job_id,
        environment_id=environment_id,
        project_id=project_id,
        statuses=statuses,
        order_by=order_by,
        limit=limit,
        offset=offset,
    )
    include = include_related(request)
    data = await present_runs(request, actor, page.rows, include)
    filters: dict[str, object] = {"account_id": actor.account_id, "limit": limit, "offset": offset}
    for key, value in (
        ("job_definition_id", job_id),
        ("environment_id", environment_id),
        ("project_id", project_id),
        ("status__in", statuses),
    ):
        if value is not None:
            filters[key] = value
    if include:
        filters["include_related"] = sorted(include)
    return envelope.ok(
        data, extra=envelope.page_extra(filters, order_by, len(data), page.total)
    )


async def _one(request: web.Request, actor: Actor, run_id: int) -> web.Response:
    run = await actor.get(Run, run_id, what="run")
    [data] = await present_runs(request, actor, [run], include_related(request))
    return envelope.ok(data)


@endpoint
async def get_run(request: web.Request, actor: Actor) -> web.Response:
    return await _one(request, actor, path_id(request, "run_id", "run"))


@endpoint
async def cancel_run(request: web.Request, actor: Actor) -> web.Response:
    run = await run_actions.cancel(
        actor, request.app[PLATFORM].db, path_id(request, "run_id", "run"),
        reason="Cancelled via API",
    )
    return await _one(request, actor, run.id)


@endpoint
async def retry_run(request: web.Request, actor: Actor) -> web.Response:
    run = await run_actions.retry(actor, path_id(request, "run_id", "run"))
    return await _one(request, actor, run.id)


def _step(request: web.Request) -> int | None:
    return query_int(request, "step", low=1, high=10_000)


@endpoint
async def list_artifacts(request: web.Request, actor: Actor) -> web.Response:
    """Artifact paths of the run (of one step with ``?step=``), like dbt Cloud's list."""
    step = _step(request)
    rows = await artifacts.list_for_run(actor, path_id(request, "run_id", "run"))
    paths = sorted({a.path for a in rows if step is None or a.step_index == step})
    return envelope.ok(paths)


async def stream_artifact(
    request: web.Request, actor: Actor, run_id: int, path: str
) -> web.StreamResponse:
    """The raw file (not enveloped), streamed from the object store."""
    dl = await artifacts.open_download(
        actor, request.app[PLATFORM].store, run_id, path, _step(request)
    )
    return await send_download(request, dl)


@endpoint
async def get_artifact(request: web.Request, actor: Actor) -> web.StreamResponse:
    return await stream_artifact(
        request, actor, path_id(request, "run_id", "run"), request.match_info["path"]
    )


ROUTES = [
    ("GET", "/runs", list_runs),
    ("GET", "/runs/{run_id}", get_run),
    ("POST", "/runs/{run_id}/cancel", cancel_run),
    ("POST", "/runs/{run_id}/retry", retry_run),
    ("GET", "/runs/{run_id}/artifacts", list_artifacts),
]
RAW_ROUTES = [("GET", "/runs/{run_id}/artifacts/{path:.+}", get_artifact)]
