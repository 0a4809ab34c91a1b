"""What a run's worker needs to execute it, resolved from the database at fetch time.

The worker holds no database credentials: it fetches this spec once over the
internal API with its run token. The spec carries decrypted secrets (warehouse
password, secret env vars), so it is built only for a run's own token and is
never logged.

Resolution rules:

* Commands are the run's ``steps_spec`` (fixed at trigger time).
* Target, threads and schema: run overrides, else the job, else the
  environment (schema: else the credentials' ``schema`` field).
* Branch: the run's branch (set at trigger time from the override or the
  environment's custom branch), else the project's default branch.
* Environment variables: project level, overridden by the environment's,
  overridden by the job's. Secret ones (``DBT_ENV_SECRET_*`` or flagged) are
  stored encrypted and decrypted here.
"""

from __future__ import annotations

import json
from typing import Any

from server.crypto import Vault
from server.models import Connection, Credentials, Environment, EnvVar, Job, Project, Run
from server.runs.masking import is_secret_name


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value or "{}")
    return dict(value or {})


async def resolve_env(
    vault: Vault, project_id: int, environment_id: int, job_id: int
) -> tuple[dict[str, str], list[str]]:
    """(name → value with secrets decrypted, names of the secret ones)."""
    rows = await EnvVar.filter(project_id=project_id).all()
    chosen: dict[str, tuple[int, EnvVar]] = {}
    for ev in rows:
        env_id = ev.environment_id  # type: ignore[attr-defined]
        j_id = ev.job_id  # type: ignore[attr-defined]
        if j_id is not None and j_id != job_id:
            continue
        if env_id is not None and env_id != environment_id:
            continue
        rank = 2 if j_id is not None else 1 if env_id is not None else 0
        if ev.name not in chosen or chosen[ev.name][0] < rank:
            chosen[ev.name] = (rank, ev)
    values: dict[str, str] = {}
    secrets: list[str] = []
    for name, (_rank, ev) in chosen.items():
        secret = ev.is_secret or is_secret_name(name)
        values[name] = vault.decrypt(ev.value) if ev.is_secret else ev.value
        if secret:
            secrets.append(name)
    return values, sorted(secrets)


async def secret_values(vault: Vault, run: Run) -> list[str]:
    """Every secret value a run's logs could contain (for masking at ingest)."""
    env, secret_names = await resolve_env(
        vault,
        run.project_id,  # type: ignore[attr-defined]
        run.environment_id,  # type: ignore[attr-defined]
        run.job_id,  # type: ignore[attr-defined]
    )
    values = [env[n] for n in secret_names]
    environment = await Environment.get(id=run.environment_id)  # type: ignore[attr-defined]
    if environment.credentials_id is not None:  # type: ignore[attr-defined]
        creds = await Credentials.get_or_none(id=environment.credentials_id)  # type: ignore[attr-defined]
        if creds is not None and creds.secrets:
            values += [str(v) for v in _json(vault.decrypt(creds.secrets)).values() if v]
    return values


async def build_spec(vault: Vault, run: Run, *, heartbeat_interval: float) -> dict[str, Any]:
    """The JSON document ``GET /internal/runs/{id}/spec`` returns (see module docstring)."""
    job = await Job.get(id=run.job_id)  # type: ignore[attr-defined]
    environment = await Environment.get(id=run.environment_id)  # type: ignore[attr-defined]
    project = await Project.get(id=run.project_id)  # type: ignore[attr-defined]
    connection = (
        await Connection.get_or_none(id=environment.connection_id)  # type: ignore[attr-defined]
        if environment.connection_id is not None  # type: ignore[attr-defined]
        else None
    )
    creds = (
        await Credentials.get_or_none(id=environment.credentials_id)  # type: ignore[attr-defined]
        if environment.credentials_id is not None  # type: ignore[attr-defined]
        else None
    )
    overrides = _json(run.overrides)
    cred_fields = _json(creds.fields_json) if creds else {}
    cred_secrets = _json(vault.decrypt(creds.secrets)) if creds and creds.secrets else {}
    env, secret_names = await resolve_env(vault, project.id, environment.id, job.id)
    adapter = (connection.adapter_type if connection else None) or (
        creds.adapter_type if creds else "duckdb"
    )
    return {
        "run": {
            "id": run.id,
            "account_id": run.account_id,  # type: ignore[attr-defined]
            "job_id": job.id,
            "job_name": job.name,
            "attempt": run.attempt,
            "trigger": run.trigger_kind,
            "cause": run.cause,
            "previous_run_id": run.previous_run_id,  # type: ignore[attr-defined]
            "timeout_seconds": run.timeout_seconds or 0,
        },
        "steps": list(run.steps_spec or []),
        "overrides": overrides,
        "project": {
            "name": project.name,
            "repository_url": project.repository_url,
            "bundled_path": project.bundled_path,
            "subdirectory": project.subdirectory or "",
            "branch": run.git_branch or project.default_branch,
            "sha": run.git_sha,
        },
        "target": {
            "name": overrides.get("target") or job.target_name or environment.target_name,
            "threads": overrides.get("threads") or job.threads or environment.threads or 4,
            "schema": overrides.get("schema") or cred_fields.get("schema"),
            "vars": overrides.get("vars"),
        },
        "connection": {
            "adapter_type": adapter,
            "details": _json(connection.details) if connection else {},
        },
        "credentials": {"fields": cred_fields, "secrets": cred_secrets},
        "env": env,
        "secret_env_names": secret_names,
        "heartbeat_interval": heartbeat_interval,
    }
