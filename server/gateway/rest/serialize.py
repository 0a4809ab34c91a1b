"""Kiln's rows in the shapes dbt Cloud's API v2 returns (the fields its clients read).

Times are strings like dbt Cloud's (``2024-05-01 12:00:00.123456+00:00``),
durations ``HH:MM:SS`` with a ``_humanized`` twin, status codes dbt Cloud's
own (1, 2, 3, 10, 20, 30). A run has one trigger in Kiln, so ``trigger_id``
is the run's id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from server.models import Account, Environment, Job, Run, RunStatus, RunStep

MAX_STEP_LOG = 1_000_000  # characters of a step's log in run_steps (the tail is kept)


def ts(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(sep=" ", timespec="microseconds")


def _seconds(start: datetime | None, end: datetime | None) -> int:
    if start is None:
        return 0
    end = end or datetime.now(UTC)
    return max(0, int((end - start).total_seconds()))


def hms(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def humanized(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    parts = []
    for n, unit in ((h, "hour"), (m, "minute"), (s, "second")):
        if n:
            parts.append(f"{n} {unit}{'' if n == 1 else 's'}")
    return ", ".join(parts) or "0 seconds"


def account(a: Account) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "state": 1,
        "plan": "enterprise",
        "pending_cancel": False,
        "run_slots": a.run_slots,
        "developer_seats": None,
        "read_only_seats": None,
        "locked": False,
        "created_at": ts(a.created_at),
        "updated_at": ts(a.updated_at),
    }


def environment(e: Environment) -> dict[str, Any]:
    return {
        "id": e.id,
        "account_id": e.account_id,  # type: ignore[attr-defined]
        "project_id": e.project_id,  # type: ignore[attr-defined]
        "connection_id": e.connection_id,  # type: ignore[attr-defined]
        "credentials_id": e.credentials_id,  # type: ignore[attr-defined]
        "name": e.name,
        "dbt_version": e.dbt_version,
        "type": e.kind,
        "deployment_type": e.deployment_type,
        "use_custom_branch": e.custom_branch is not None,
        "custom_branch": e.custom_branch,
        "state": 2 if e.deleted_at is not None else 1,
        "created_at": ts(e.created_at),
        "updated_at": ts(e.updated_at),
    }


_STATUS_NAMES = {10: "success", 20: "error", 30: "cancelled"}


def job(j: Job, env: Environment | None = None) -> dict[str, Any]:
    stored = dict(j.triggers or {})
    triggers = {
        "github_webhook": bool(stored.pop("github_webhook", False)),
        "git_provider_webhook": bool(stored.pop("git_provider_webhook", False)),
        "schedule": j.cron is not None,
        "on_merge": bool(stored.pop("on_merge", False)),
        "custom_branch_only": bool(stored.pop("custom_branch_only", False)),
        **{k: v for k, v in stored.items() if k != "schedule"},
    }
    completion = None
    if j.trigger_job_id is not None:  # type: ignore[attr-defined]
        completion = {
            "condition": {
                "job_id": j.trigger_job_id,  # type: ignore[attr-defined]
                "project_id": j.project_id,  # type: ignore[attr-defined]
                "statuses": sorted(int(s) for s in j.trigger_statuses or []),
            }
        }
    out: dict[str, Any] = {
        "id": j.id,
        "account_id": j.account_id,  # type: ignore[attr-defined]
        "project_id": j.project_id,  # type: ignore[attr-defined]
        "environment_id": j.environment_id,  # type: ignore[attr-defined]
        "name": j.name,
        "description": j.description,
        "dbt_version": None,
        "triggers": triggers,
        "execute_steps": list(j.steps or []),
        "settings": {
            "threads": j.threads if j.threads is not None else (env.threads if env else 4),
            "target_name": j.target_name or (env.target_name if env else "default"),
        },
        "state": 2 if j.deleted_at is not None else 1,
        "deactivated": False,
        "generate_docs": j.generate_docs,
        "run_generate_sources": j.run_freshness,
        "timeout_seconds": j.timeout_seconds,
        "schedule": {
            "cron": j.cron,
            "timezone": j.timezone,
            "date": {"type": "custom_cron", "cron": j.cron} if j.cron else {"type": "every_day"},
            "time": {"type": "every_hour", "interval": 1},
        },
        "next_run": ts(j.next_tick_at),
        "job_type": "scheduled" if j.cron else "other",
        "job_completion_trigger_condition": completion,
        "is_deferrable": False,
        "deferring_job_definition_id": None,
        "deferring_environment_id": None,
        "lifecycle_webhooks": False,
        "created_at": ts(j.created_at),
        "updated_at": ts(j.updated_at),
        "deleted_at": ts(j.deleted_at),
    }
    if env is not None:
        out["environment"] = environment(env)
    return out


def step(s: RunStep, logs: str | None) -> dict[str, Any]:
    status = RunStatus(s.status)
    secs = _seconds(s.started_at, s.finished_at) if s.started_at else 0
    return {
        "id": s.id,
        "run_id": s.run_id,  # type: ignore[attr-defined]
        "account_id": s.account_id,  # type: ignore[attr-defined]
        "index": s.index,
        "name": s.name,
        "status": int(status),
        "status_humanized": status.humanized,
        "status_color": {10: "green", 20: "red", 30: "orange"}.get(int(status), "gray"),
        "logs": logs if logs is not None else "",
        "debug_logs": None,
        "log_path": None,
        "debug_log_path": None,
        "truncated_debug_logs": None,
        "created_at": ts(s.created_at),
        "updated_at": ts(s.updated_at),
        "started_at": ts(s.started_at),
        "finished_at": ts(s.finished_at),
        "duration": hms(secs),
        "duration_humanized": humanized(secs),
    }


def trigger(r: Run) -> dict[str, Any]:
    ov = r.overrides or {}
    return {
        "id": r.id,
        "cause": r.cause,
        "cause_humanized": r.cause,
        "job_definition_id": r.job_id,  # type: ignore[attr-defined]
        "git_branch": ov.get("git_branch"),
        "git_sha": ov.get("git_sha"),
        "azure_pull_request_id": None,
        "github_pull_request_id": None,
        "gitlab_merge_request_id": None,
        "schema_override": ov.get("schema"),
        "dbt_version_override": None,
        "threads_override": ov.get("threads"),
        "target_name_override": ov.get("target"),
        "generate_docs_override": ov.get("generate_docs"),
        "timeout_seconds_override": ov.get("timeout_seconds"),
        "steps_override": ov.get("steps"),
        "created_at": ts(r.created_at),
    }


def run(
    r: Run,
    *,
    base_url: str,
    job_row: Job | None = None,
    env: Environment | None = None,
    steps: list[dict[str, Any]] | None = None,
    include: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    status = RunStatus(r.status)
    end = r.finished_at
    duration = _seconds(r.created_at, end)
    queued = _seconds(r.created_at, r.started_at or r.finished_at)
    running = _seconds(r.started_at, end) if r.started_at else 0
    project_id = r.project_id  # type: ignore[attr-defined]
    out: dict[str, Any] = {
        "id": r.id,
        "trigger_id": r.id,
        "account_id": r.account_id,  # type: ignore[attr-defined]
        "environment_id": r.environment_id,  # type: ignore[attr-defined]
        "project_id": project_id,
        "job_definition_id": r.job_id,  # type: ignore[attr-defined]
        "job_id": r.job_id,  # type: ignore[attr-defined]
        "status": int(status),
        "status_humanized": status.humanized,
        "status_message": r.status_message,
        "dbt_version": env.dbt_version if env is not None else None,
        "git_branch": r.git_branch,
        "git_sha": r.git_sha,
        "attempt": r.attempt,
        "previous_run_id": r.previous_run_id,  # type: ignore[attr-defined]
        "artifacts_saved": r.artifacts_saved or status.is_final,
        "has_docs_generated": any(
            s.get("kind") == "docs" for s in (r.steps_spec or []) if isinstance(s, dict)
        ),
        "has_sources_generated": any(
            s.get("kind") == "freshness" for s in (r.steps_spec or []) if isinstance(s, dict)
        ),
        "created_at": ts(r.created_at),
        "updated_at": ts(r.updated_at),
        "dequeued_at": ts(r.dequeued_at),
        "started_at": ts(r.started_at),
        "finished_at": ts(r.finished_at),
        "last_heartbeat_at": ts(r.heartbeat_at),
        "should_start_at": ts(r.scheduled_for),
        "scheduled_for": ts(r.scheduled_for),
        "duration": hms(duration),
        "queued_duration": hms(queued),
        "run_duration": hms(running),
        "duration_humanized": humanized(duration),
        "queued_duration_humanized": humanized(queued),
        "run_duration_humanized": humanized(running),
        "in_progress": not status.is_final,
        "is_complete": status.is_final,
        "is_success": status == RunStatus.SUCCESS,
        "is_error": status == RunStatus.ERROR,
        "is_cancelled": status == RunStatus.CANCELLED,
        "is_running": status == RunStatus.RUNNING,
        "href": f"{base_url}/#/accounts/{out_account(r)}/projects/{project_id}/runs/{r.id}/",
    }
    if "trigger" in include:
        out["trigger"] = trigger(r)
    if "job" in include:
        out["job"] = job(job_row, env) if job_row is not None else None
    if "environment" in include:
        out["environment"] = environment(env) if env is not None else None
    if "run_steps" in include:
        out["run_steps"] = steps or []
    return out


def out_account(r: Run) -> int:
    return r.account_id  # type: ignore[attr-defined]
