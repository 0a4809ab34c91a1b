"""Helpers shared by the REST handlers: related objects of runs, step logs, base URL."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aiohttp import web

from server.gateway.app import PLATFORM
from server.gateway.rest import serialize
from server.gateway.rest.params import query_list
from server.logs.read import log_reader
from server.models import Environment, Job, Run
from server.services import dbt_cloud
from server.services.actor import Actor

RUN_RELATED = frozenset({"trigger", "job", "environment", "run_steps", "debug_logs"})


def base_url(request: web.Request) -> str:
    """Where the caller reached us (for ``href``), honouring a TLS-terminating proxy."""
    proto = request.headers.get("X-Forwarded-Proto") or request.scheme
    return f"{proto}://{request.host}"


def include_related(request: web.Request) -> frozenset[str]:
    """The ``include_related`` names the API knows (others are ignored, as clients send
    names of dbt Cloud features Kiln does not have)."""
    return frozenset(query_list(request, "include_related")) & RUN_RELATED


async def step_logs(request: web.Request, run: Run) -> dict[int, str]:
    """Each step's log as text (dbt's own text format), the tail if it is very long."""
    reader = log_reader(request.app[PLATFORM])
    lines: dict[int, list[str]] = defaultdict(list)
    async for batch in reader.iter_all(run.id, run.account_id):  # type: ignore[attr-defined]
        for ln in batch:
            if ln.step is not None:
                lines[ln.step].append(f"{ln.ts:%H:%M:%S}  {ln.message}")
    out: dict[int, str] = {}
    for step_index, texts in lines.items():
        text = "\n".join(texts)
        if len(text) > serialize.MAX_STEP_LOG:
            text = "[earlier lines truncated]\n" + text[-serialize.MAX_STEP_LOG :]
        out[step_index] = text
    return out


async def present_runs(
    request: web.Request, actor: Actor, runs: list[Run], include: frozenset[str]
) -> list[dict[str, Any]]:
    """Runs with what ``include`` asks for, in a constant number of queries (plus one log
    read per run when steps are included)."""
    envs = await dbt_cloud.by_ids(
        actor, Environment, [r.environment_id for r in runs]  # type: ignore[attr-defined]
    )
    jobs = (
        await dbt_cloud.by_ids(actor, Job, [r.job_id for r in runs])  # type: ignore[attr-defined]
        if "job" in include
        else {}
    )
    steps = await dbt_cloud.steps_of(actor, [r.id for r in runs]) if "run_steps" in include else {}
    base = base_url(request)
    out = []
    for r in runs:
        step_json = None
        if "run_steps" in include:
            logs = await step_logs(request, r)
            step_json = [serialize.step(s, logs.get(s.index, "")) for s in steps.get(r.id, [])]
        out.append(
            serialize.run(
                r,
                base_url=base,
                job_row=jobs.get(r.job_id),  # type: ignore[attr-defined]
                env=envs.get(r.environment_id),  # type: ignore[attr-defined]
                steps=step_json,
                include=include,
            )
        )
    return out
