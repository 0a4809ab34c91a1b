"""The OpenAPI 3 description of the v2 subset, served at ``/api/v2/openapi.json``.

Built here in Python (shared pieces stay shared) and checked in as
``openapi.json`` beside this file for readers and tools; a test fails when
the file is stale (regenerate: ``python -m server.gateway.rest.openapi``),
and the REST tests validate real responses against it, so it stays true.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiohttp import web

from server import __version__

PATH = Path(__file__).with_name("openapi.json")
STATUS_CODES = [1, 2, 3, 10, 20, 30]
STATUS_NAMES = ["Queued", "Starting", "Running", "Success", "Error", "Cancelled"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:  # OpenAPI 3.0 ignores siblings of $ref
        return {"allOf": [schema], "nullable": True}
    return {**schema, "nullable": True}


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
NSTR = _nullable(STR)
NINT = _nullable(INT)
NBOOL = _nullable(BOOL)
TIME = _nullable({"type": "string", "description": "e.g. 2024-05-01 12:00:00.123456+00:00"})
HMS = {"type": "string", "pattern": r"^\d{2,}:\d{2}:\d{2}$"}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    out["required"] = list(props) if required is None else required
    return out


def _envelope(data: dict[str, Any], *, lst: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {"status": _ref("Status"), "data": data}
    if lst:
        props["extra"] = _ref("Extra")
    return _obj(props)


SCHEMAS: dict[str, Any] = {
    "Status": _obj(
        {"code": INT, "is_success": BOOL, "user_message": STR, "developer_message": STR}
    ),
    "Error": _obj(
        {
            "status": _ref("Status"),
            "data": _nullable(
                {
                    "type": "object",
                    "description": "for a 400: the bad field and its messages",
                    "additionalProperties": {"type": "array", "items": STR},
                }
            ),
        }
    ),
    "Extra": _obj(
        {
            "filters": {"type": "object"},
            "order_by": NSTR,
            "pagination": _obj({"count": INT, "total_count": INT}),
        }
    ),
    "Account": _obj(
        {
            "id": INT,
            "name": STR,
            "state": INT,
            "plan": STR,
            "run_slots": INT,
            "created_at": TIME,
            "updated_at": TIME,
        }
    ),
    "Environment": _obj(
        {
            "id": INT,
            "account_id": INT,
            "project_id": INT,
            "name": STR,
            "dbt_version": STR,
            "type": {"type": "string", "enum": ["development", "deployment"]},
            "deployment_type": NSTR,
            "custom_branch": NSTR,
            "use_custom_branch": BOOL,
            "state": INT,
        }
    ),
    "Triggers": _obj(
        {
            "github_webhook": BOOL,
            "git_provider_webhook": BOOL,
            "schedule": BOOL,
            "on_merge": BOOL,
            "custom_branch_only": BOOL,
        },
        required=["schedule"],
    ),
    "Schedule": _obj(
        {
            "cron": NSTR,
            "timezone": STR,
            "date": {"type": "object"},
            "time": {"type": "object"},
        },
        required=["cron"],
    ),
    "CompletionTrigger": _nullable(
        _obj(
            {
                "condition": _obj(
                    {
                        "job_id": INT,
                        "project_id": INT,
                        "statuses": {
                            "type": "array",
                            "items": {"type": "integer", "enum": [10, 20, 30]},
                        },
                    }
                )
            }
        )
    ),
    "Job": _obj(
        {
            "id": INT,
            "account_id": INT,
            "project_id": INT,
            "environment_id": INT,
            "name": STR,
            "description": STR,
            "dbt_version": NSTR,
            "triggers": _ref("Triggers"),
            "execute_steps": {"type": "array", "items": STR},
            "settings": _obj({"threads": INT, "target_name": STR}),
            "state": {"type": "integer", "enum": [1, 2]},
            "generate_docs": BOOL,
            "run_generate_sources": BOOL,
            "timeout_seconds": INT,
            "schedule": _ref("Schedule"),
            "next_run": TIME,
            "job_type": STR,
            "job_completion_trigger_condition": _ref("CompletionTrigger"),
            "created_at": TIME,
            "updated_at": TIME,
            "environment": _ref("Environment"),
        },
        required=[
            "id", "account_id", "project_id", "environment_id", "name", "triggers",
            "execute_steps", "settings", "state", "generate_docs", "schedule",
        ],
    ),
    "Trigger": _obj(
        {
            "id": INT,
            "cause": STR,
            "job_definition_id": INT,
            "git_branch": NSTR,
            "git_sha": NSTR,
            "schema_override": NSTR,
            "threads_override": NINT,
            "target_name_override": NSTR,
            "generate_docs_override": NBOOL,
            "timeout_seconds_override": NINT,
            "steps_override": _nullable({"type": "array", "items": STR}),
            "created_at": TIME,
        }
    ),
    "RunStep": _obj(
        {
            "id": INT,
            "run_id": INT,
            "account_id": INT,
            "index": INT,
            "name": STR,
            "status": {"type": "integer", "enum": STATUS_CODES},
            "status_humanized": {"type": "string", "enum": STATUS_NAMES},
            "logs": STR,
            "started_at": TIME,
            "finished_at": TIME,
            "duration": HMS,
            "duration_humanized": STR,
        }
    ),
    "Run": _obj(
        {
            "id": INT,
            "trigger_id": INT,
            "account_id": INT,
            "environment_id": INT,
            "project_id": INT,
            "job_definition_id": INT,
            "job_id": INT,
            "status": {"type": "integer", "enum": STATUS_CODES},
            "status_humanized": {"type": "string", "enum": STATUS_NAMES},
            "status_message": NSTR,
            "git_branch": NSTR,
            "git_sha": NSTR,
            "created_at": TIME,
            "updated_at": TIME,
            "dequeued_at": TIME,
            "started_at": TIME,
            "finished_at": TIME,
            "duration": HMS,
            "queued_duration": HMS,
            "run_duration": HMS,
            "duration_humanized": STR,
            "queued_duration_humanized": STR,
            "run_duration_humanized": STR,
            "in_progress": BOOL,
            "is_complete": BOOL,
            "is_success": BOOL,
            "is_error": BOOL,
            "is_cancelled": BOOL,
            "href": STR,
            "trigger": _ref("Trigger"),
            "job": _nullable(_ref("Job")),
            "environment": _nullable(_ref("Environment")),
            "run_steps": {"type": "array", "items": _ref("RunStep")},
        },
        required=[
            "id", "trigger_id", "account_id", "environment_id", "project_id",
            "job_definition_id", "job_id", "status", "status_humanized", "status_message",
            "git_branch", "git_sha", "created_at", "updated_at", "dequeued_at", "started_at",
            "finished_at", "duration", "queued_duration", "run_duration", "duration_humanized",
            "queued_duration_humanized", "run_duration_humanized", "in_progress", "is_complete",
            "is_success", "is_error", "is_cancelled", "href",
        ],
    ),
    "JobInput": {
        "type": "object",
        "description": "dbt Cloud's job object; unknown fields are ignored",
        "properties": {
            "account_id": INT,
            "project_id": INT,
            "environment_id": INT,
            "name": STR,
            "description": STR,
            "execute_steps": {"type": "array", "items": STR},
            "generate_docs": BOOL,
            "run_generate_sources": BOOL,
            "timeout_seconds": INT,
            "settings": {
                "type": "object",
                "properties": {"threads": INT, "target_name": STR},
            },
            "triggers": {"type": "object", "additionalProperties": BOOL},
            "schedule": {"type": "object", "properties": {"cron": NSTR, "timezone": STR}},
            "job_completion_trigger_condition": _ref("CompletionTrigger"),
        },
    },
    "TriggerRunInput": {
        "type": "object",
        "description": "unknown and null fields are tolerated",
        "properties": {
            "cause": STR,
            "git_branch": NSTR,
            "git_sha": NSTR,
            "schema_override": NSTR,
            "threads_override": NINT,
            "target_name_override": NSTR,
            "steps_override": _nullable({"type": "array", "items": STR}),
            "timeout_seconds_override": NINT,
            "generate_docs_override": NBOOL,
        },
    },
}
SCHEMAS["AccountResponse"] = _envelope(_ref("Account"))
SCHEMAS["AccountList"] = _envelope({"type": "array", "items": _ref("Account")}, lst=True)
SCHEMAS["JobResponse"] = _envelope(_ref("Job"))
SCHEMAS["JobList"] = _envelope({"type": "array", "items": _ref("Job")}, lst=True)
SCHEMAS["RunResponse"] = _envelope(_ref("Run"))
SCHEMAS["RunList"] = _envelope({"type": "array", "items": _ref("Run")}, lst=True)
SCHEMAS["ArtifactList"] = _envelope({"type": "array", "items": STR})


def _param(name: str, where: str, schema: dict[str, Any], desc: str = "",
           required: bool = False) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "in": where, "schema": schema}
    if where == "path" or required:
        p["required"] = True
    if desc:
        p["description"] = desc
    return p


ID = {"type": "integer", "minimum": 1}
P_ACCOUNT = _param("account_id", "path", ID)
P_JOB = _param("job_id", "path", ID)
P_RUN = _param("run_id", "path", ID)
P_PATH = _param("path", "path", {"type": "string"}, "relative to target/, e.g. manifest.json")
P_STEP = _param("step", "query", {"type": "integer", "minimum": 1}, "1-based run step index")
P_LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100})
P_OFFSET = _param("offset", "query", {"type": "integer", "minimum": 0})
P_INCLUDE = _param(
    "include_related",
    "query",
    {"type": "string"},
    "trigger, job, environment, run_steps: repeated, comma separated, or a JSON list",
)


def _order(names: list[str]) -> dict[str, Any]:
    values = names + [f"-{n}" for n in names]
    return _param("order_by", "query", {"type": "string", "enum": values})


ERRORS = {
    str(code): {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}
    for code, text in (
        (400, "bad input (the message names the field)"),
        (401, "no or invalid token"),
        (403, "the token's role may not do this"),
        (404, "not found, or another account's"),
        (409, "conflicts with the object's state"),
        (429, "rate limit exceeded (Retry-After says when to retry)"),
    )
}


def _op(summary: str, response: str | None, params: list[dict[str, Any]],
        body: str | None = None, raw: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params}
    if raw:
        ok = {"description": "the file", "content": {"*/*": {"schema": {}}}}
    else:
        ok = {"description": "success",
              "content": {"application/json": {"schema": _ref(str(response))}}}
    op["responses"] = {"200": ok, **ERRORS}
    if body:
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


JOB_ORDER = ["id", "name", "created_at", "updated_at"]
RUN_ORDER = ["id", "created_at", "updated_at", "started_at", "finished_at", "status"]
A = "/api/v2/accounts/{account_id}"


def _pos(name: str) -> dict[str, Any]:
    return _param(name, "query", ID)


def build() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/api/v2/accounts/": {"get": _op("Accounts of the token", "AccountList", [])},
        f"{A}/": {"get": _op("One account", "AccountResponse", [P_ACCOUNT])},
        f"{A}/jobs/": {
            "get": _op(
                "List jobs",
                "JobList",
                [P_ACCOUNT, _pos("project_id"), _pos("environment_id"), _order(JOB_ORDER),
                 P_LIMIT, P_OFFSET, P_INCLUDE],
            ),
            "post": _op("Create a job", "JobResponse", [P_ACCOUNT], "JobInput"),
        },
        f"{A}/jobs/{{job_id}}/": {
            "get": _op("One job", "JobResponse", [P_ACCOUNT, P_JOB, P_INCLUDE]),
            "post": _op("Update a job", "JobResponse", [P_ACCOUNT, P_JOB], "JobInput"),
            "delete": _op("Delete a job", "JobResponse", [P_ACCOUNT, P_JOB]),
        },
        f"{A}/jobs/{{job_id}}/run/": {
            "post": _op("Trigger a run", "RunResponse", [P_ACCOUNT, P_JOB], "TriggerRunInput")
        },
        f"{A}/jobs/{{job_id}}/rerun/": {
            "post": _op("Rerun the job's latest run from its failure", "RunResponse",
                        [P_ACCOUNT, P_JOB])
        },
        f"{A}/jobs/{{job_id}}/artifacts/{{path}}": {
            "get": _op("An artifact of the job's latest successful run", None,
                       [P_ACCOUNT, P_JOB, P_PATH, P_STEP], raw=True)
        },
        f"{A}/runs/": {
            "get": _op(
                "List runs",
                "RunList",
                [
                    P_ACCOUNT,
                    _pos("job_definition_id"),
                    _pos("environment_id"),
                    _pos("project_id"),
                    _param("status", "query", {"type": "integer", "enum": STATUS_CODES}),
                    _param("status__in", "query", {"type": "string"}, "e.g. [1,2,3]"),
                    _order(RUN_ORDER),
                    P_LIMIT,
                    P_OFFSET,
                    P_INCLUDE,
                ],
            )
        },
        f"{A}/runs/{{run_id}}/": {
            "get": _op("One run", "RunResponse", [P_ACCOUNT, P_RUN, P_INCLUDE])
        },
        f"{A}/runs/{{run_id}}/cancel/": {
            "post": _op("Cancel a run", "RunResponse", [P_ACCOUNT, P_RUN])
        },
        f"{A}/runs/{{run_id}}/retry/": {
            "post": _op("Rerun an errored run from its failure", "RunResponse",
                        [P_ACCOUNT, P_RUN])
        },
        f"{A}/runs/{{run_id}}/artifacts/": {
            "get": _op("Artifact paths of a run", "ArtifactList", [P_ACCOUNT, P_RUN, P_STEP])
        },
        f"{A}/runs/{{run_id}}/artifacts/{{path}}": {
            "get": _op("One artifact (the raw file)", None, [P_ACCOUNT, P_RUN, P_PATH, P_STEP],
                       raw=True)
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Kiln REST API v2 (dbt Cloud compatible)",
            "version": __version__,
            "description": (
                "The subset of dbt Cloud's Administrative API v2 that Kiln implements. "
                "Every path also answers without its trailing slash."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"token": []}],
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "'Token <api token>' or 'Bearer <api token>'",
                }
            },
            "schemas": SCHEMAS,
        },
        "paths": paths,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


@lru_cache(maxsize=1)
def _served() -> str:
    return render()


async def openapi_view(_request: web.Request) -> web.Response:
    return web.Response(text=_served(), content_type="application/json")


if __name__ == "__main__":
    PATH.write_text(render())
    print(f"wrote {PATH}")
