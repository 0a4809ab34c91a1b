"""``/api/v2/accounts/{account_id}/jobs/...``: jobs, triggering runs, job artifacts.

A job body is dbt Cloud's job object; the fields Kiln has are applied, the
rest (``dbt_version``, ``state``, ``deactivated``...) are accepted and
ignored, so a client can POST back a job it fetched. The schedule is on
when ``triggers.schedule`` is true (or, without ``triggers``, when
``schedule.cron`` is set); ``triggers`` itself is stored as given.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.gateway.rest import envelope
from server.gateway.rest.auth import endpoint
from server.gateway.rest.common import include_related, present_runs
from server.gateway.rest.params import (
    body_bool,
    body_int,
    body_object,
    body_str,
    body_str_list,
    json_body,
    page_params,
    path_id,
    query_int,
    query_list,
    query_str,
)
from server.gateway.rest.runs import stream_artifact
from server.gateway.rest.serialize import job as job_json
from server.models import Environment, Job, RunStatus
from server.services import dbt_cloud, jobs, run_actions
from server.services.actor import Actor
from server.services.errors import DomainError, NotFound
from server.services.jobs import CompletionTrigger, Schedule
from server.services.runs import MAX_THREADS, MAX_TIMEOUT, RunOverrides

# service field names → REST names, for error messages
JOB_FIELDS = {
    "environmentId": "environment_id",
    "steps": "execute_steps",
    "timeoutSeconds": "timeout_seconds",
    "threads": "settings.threads",
    "targetName": "settings.target_name",
    "completionTrigger.statuses": "job_completion_trigger_condition",
    "completionTrigger.jobId": "job_completion_trigger_condition",
}
RUN_FIELDS = {
    "overrides.steps": "steps_override",
    "overrides.threads": "threads_override",
    "overrides.timeoutSeconds": "timeout_seconds_override",
    "overrides.target": "target_name_override",
    "overrides.git_branch": "git_branch",
    "overrides.gitSha": "git_sha",
    "overrides.schema": "schema_override",
}
_STATUS_WORDS = {int(RunStatus.SUCCESS): "success", int(RunStatus.ERROR): "error",
                 int(RunStatus.CANCELLED): "cancelled"}
JOB_RELATED = frozenset({"environment"})


async def _present(actor: Actor, rows: list[Job], with_env: bool) -> list[dict[str, Any]]:
    envs = await dbt_cloud.by_ids(
        actor, Environment, [j.environment_id for j in rows]  # type: ignore[attr-defined]
    )
    out = []
    for j in rows:
        data = job_json(j, envs.get(j.environment_id))  # type: ignore[attr-defined]
        if not with_env:
            data.pop("environment", None)
        out.append(data)
    return out


@endpoint
async def list_jobs(request: web.Request, actor: Actor) -> web.Response:
    project_id = query_int(request, "project_id")
    environment_id = query_int(request, "environment_id")
    order_by = query_str(request, "order_by", "id")
    limit, offset = page_params(request, dbt_cloud.MAX_LIMIT)
    page = await dbt_cloud.list_jobs(
        actor,
        project_id=project_id,
        environment_id=environment_id,
        order_by=order_by,
        limit=limit,
        offset=offset,
    )
    with_env = "environment" in query_list(request, "include_related")
    data = await _present(actor, page.rows, with_env)
    filters: dict[str, Any] = {"account_id": actor.account_id, "limit": limit, "offset": offset}
    if project_id is not None:
        filters["project_id"] = project_id
    if environment_id is not None:
        filters["environment_id"] = environment_id
    return envelope.ok(data, extra=envelope.page_extra(filters, order_by, len(data), page.total))


async def _job_response(request: web.Request, actor: Actor, job_id: int) -> web.Response:
    job = await actor.get(Job, job_id, what="job")
    with_env = "environment" in query_list(request, "include_related")
    [data] = await _present(actor, [job], with_env)
    return envelope.ok(data)


@endpoint
async def get_job(request: web.Request, actor: Actor) -> web.Response:
    return await _job_response(request, actor, path_id(request, "job_id", "job"))


async def _completion(actor: Actor, value: Any) -> CompletionTrigger | None:
    field = "job_completion_trigger_condition"
    if value is None:
        return None
    if not isinstance(value, dict):
        raise envelope.bad_request("must be an object or null", field)
    cond = value.get("condition", value)
    if not isinstance(cond, dict):
        raise envelope.bad_request("condition must be an object", field)
    job_id = body_int(cond, "job_id", prefix=f"{field}.condition.", low=1)
    if job_id is None:
        raise envelope.bad_request("condition.job_id is required", field)
    statuses = cond.get("statuses")
    if (
        not isinstance(statuses, list)
        or not statuses
        or not all(not isinstance(s, bool) and s in _STATUS_WORDS for s in statuses)
    ):
        raise envelope.bad_request("condition.statuses must be a list of 10, 20, 30", field)
    try:
        await actor.get(Job, job_id, what="job")
    except NotFound:
        raise envelope.bad_request(f"job {job_id} not found", field) from None
    return CompletionTrigger(job_id, tuple(_STATUS_WORDS[s] for s in statuses))


async def _job_values(
    actor: Actor, doc: dict[str, Any], current: Job | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The service's values and the ``triggers`` object to store, from a dbt Cloud body."""
    values: dict[str, Any] = {}
    account_id = body_int(doc, "account_id", low=1)
    if account_id is not None and account_id != actor.account_id:
        raise envelope.bad_request("does not match the account in the path", "account_id")
    for name in ("name", "description"):
        value = body_str(doc, name)
        if value is not None:
            values[name] = value
    env_id = body_int(doc, "environment_id", low=1)
    if env_id is not None:
        try:
            env_project = await dbt_cloud.project_of_environment(actor, env_id)
        except NotFound:
            raise envelope.bad_request(f"environment {env_id} not found",
                                       "environment_id") from None
        values["environment_id"] = env_id
    else:
        env_project = current.project_id if current is not None else None  # type: ignore[attr-defined]
    project_id = body_int(doc, "project_id", low=1)
    if project_id is not None and env_project is not None and project_id != env_project:
        raise envelope.bad_request("is not the project of the job's environment", "project_id")
    steps = body_str_list(doc, "execute_steps")
    if steps is not None:
        values["steps"] = steps
    for rest_name, name in (("generate_docs", "generate_docs"),
                            ("run_generate_sources", "run_freshness")):
        flag = body_bool(doc, rest_name)
        if flag is not None:
            values[name] = flag
    timeout = body_int(doc, "timeout_seconds", low=0, high=MAX_TIMEOUT)
    if timeout is not None:
        values["timeout_seconds"] = timeout
    settings = body_object(doc, "settings")
    if settings is not None:
        threads = body_int(settings, "threads", prefix="settings.", low=1, high=MAX_THREADS)
        if threads is not None:
            values["threads"] = threads
        target = body_str(settings, "target_name", prefix="settings.", max_length=100)
        if target is not None:
            values["target_name"] = target
    if "job_completion_trigger_condition" in doc:
        values["completion_trigger"] = await _completion(
            actor, doc["job_completion_trigger_condition"]
        )
    triggers = body_object(doc, "triggers")
    if triggers is not None:
        triggers = dbt_cloud.check_triggers(triggers)
    schedule = body_object(doc, "schedule")
    if schedule is not None or triggers is not None:
        cron = current.cron if current is not None else None
        timezone = current.timezone if current is not None else "UTC"
        if schedule is not None:
            cron = body_str(schedule, "cron", prefix="schedule.", max_length=200) or cron
            timezone = (
                body_str(schedule, "timezone", prefix="schedule.", max_length=100) or timezone
            )
        on = triggers.get("schedule") if triggers and "schedule" in triggers else cron is not None
        if on and not cron:
            raise envelope.bad_request("schedule.cron is required when triggers.schedule is true",
                                       "schedule.cron")
        values["schedule"] = Schedule(cron if on else None, timezone)
    return values, triggers


async def _save_triggers(actor: Actor, job: Job, triggers: dict[str, Any] | None) -> None:
    if triggers is not None:
        await dbt_cloud.set_job_triggers(actor, job.id, triggers)


@endpoint
async def create_job(request: web.Request, actor: Actor) -> web.Response:
    doc = await json_body(request)
    values, triggers = await _job_values(actor, doc, None)
    if "environment_id" not in values:
        raise envelope.bad_request("is required", "environment_id")
    try:
        job = await jobs.create_job(actor, values)
        await _save_triggers(actor, job, triggers)
    except DomainError as exc:
        return envelope.domain_error(exc, JOB_FIELDS)
    return await _job_response(request, actor, job.id)


@endpoint
async def update_job(request: web.Request, actor: Actor) -> web.Response:
    job_id = path_id(request, "job_id", "job")
    current = await actor.get(Job, job_id, what="job")
    doc = await json_body(request)
    body_id = body_int(doc, "id", low=1)
    if body_id is not None and body_id != job_id:
        raise envelope.bad_request("does not match the job in the path", "id")
    values, triggers = await _job_values(actor, doc, current)
    try:
        job = await jobs.update_job(actor, job_id, values)
        await _save_triggers(actor, job, triggers)
    except DomainError as exc:
        return envelope.domain_error(exc, JOB_FIELDS)
    return await _job_response(request, actor, job.id)


@endpoint
async def delete_job(request: web.Request, actor: Actor) -> web.Response:
    job_id = path_id(request, "job_id", "job")
    await jobs.delete_job(actor, job_id)
    job = await Job.get(id=job_id)  # deleted now: actor.get would say not found
    [data] = await _present(actor, [job], False)
    return envelope.ok(data)


def _overrides(doc: dict[str, Any]) -> RunOverrides:
    return RunOverrides(
        steps=body_str_list(doc, "steps_override"),
        threads=body_int(doc, "threads_override", low=1, high=MAX_THREADS),
        target=body_str(doc, "target_name_override", max_length=200),
        git_branch=body_str(doc, "git_branch", max_length=200),
        git_sha=body_str(doc, "git_sha", max_length=64),
        timeout_seconds=body_int(doc, "timeout_seconds_override", low=0, high=MAX_TIMEOUT),
        generate_docs=body_bool(doc, "generate_docs_override"),
        schema=body_str(doc, "schema_override", max_length=200),
    )


_TRIGGER_INCLUDE = frozenset({"trigger", "job", "environment"})


@endpoint
async def trigger_run(request: web.Request, actor: Actor) -> web.Response:
    """Queue a run (dbt Cloud's ``cause`` is optional here); answers the queued run."""
    job_id = path_id(request, "job_id", "job")
    doc = await json_body(request)
    cause = body_str(doc, "cause", max_length=255) or ""
    overrides = _overrides(doc)
    try:
        run = await run_actions.trigger(actor, job_id, cause=cause, overrides=overrides)
    except DomainError as exc:
        return envelope.domain_error(exc, RUN_FIELDS)
    include = include_related(request) | _TRIGGER_INCLUDE
    [data] = await present_runs(request, actor, [run], include)
    return envelope.ok(data)


@endpoint
async def rerun(request: web.Request, actor: Actor) -> web.Response:
    """Rerun the job's latest run from its failure (409 unless it ended in error)."""
    latest = await dbt_cloud.latest_run(actor, path_id(request, "job_id", "job"))
    run = await run_actions.retry(actor, latest.id)
    include = include_related(request) | _TRIGGER_INCLUDE
    [data] = await present_runs(request, actor, [run], include)
    return envelope.ok(data)


@endpoint
async def get_job_artifact(request: web.Request, actor: Actor) -> web.StreamResponse:
    """An artifact of the job's latest successful run."""
    run = await dbt_cloud.latest_run(
        actor, path_id(request, "job_id", "job"), status=RunStatus.SUCCESS
    )
    return await stream_artifact(request, actor, run.id, request.match_info["path"])


ROUTES = [
    ("GET", "/jobs", list_jobs),
    ("POST", "/jobs", create_job),
    ("GET", "/jobs/{job_id}", get_job),
    ("POST", "/jobs/{job_id}", update_job),
    ("DELETE", "/jobs/{job_id}", delete_job),
    ("POST", "/jobs/{job_id}/run", trigger_run),
    ("POST", "/jobs/{job_id}/rerun", rerun),
]
RAW_ROUTES = [("GET", "/jobs/{job_id}/artifacts/{path:.+}", get_job_artifact)]
