"""Webhook events in dbt Cloud's shape, their ids, and the signature.

A payload is built once, when its delivery row is created, and stored as the
exact bytes that are signed and sent: every retry sends the same body, and
every scheduler process that builds it for the same event builds the same
one (it depends only on stored rows), which is what makes creation idempotent.

Event ids are deterministic (``wev_<run>_<kind>``), so (webhook, event id) is
unique per run event whichever process noticed it first. Receivers may use
``eventId`` to drop the rare duplicate an interrupted delivery can cause.

Signature: ``Authorization: <hex HMAC-SHA256 of the raw body>`` keyed with the
subscription's secret, as dbt Cloud does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

STARTED = "job.run.started"
COMPLETED = "job.run.completed"
ERRORED = "job.run.errored"
EVENT_TYPES = (STARTED, COMPLETED, ERRORED)
TEST = "webhook.test"

# dbt Cloud's words for the statuses in webhook payloads (the API says "Error")
_RUN_STATUS = {1: "Queued", 2: "Starting", 3: "Running", 10: "Success", 20: "Errored",
               30: "Cancelled"}


def subscription_id(webhook_id: int) -> str:
    """dbt Cloud's ``wsu_`` form of a subscription id."""
    return f"wsu_{webhook_id}"


def parse_subscription_id(raw: str) -> int | None:
    """``wsu_12`` or ``12`` → 12; None for anything else."""
    digits = raw[4:] if raw.startswith("wsu_") else raw
    if not digits.isdigit() or len(digits) > 18:
        return None
    value = int(digits)
    return value if value > 0 else None


def event_id(run_id: int, event_type: str) -> str:
    return f"wev_{run_id}_{event_type.rsplit('.', 1)[-1]}"


def events_for_run(
    status: int, started_at: datetime | None, finished_at: datetime | None
) -> list[tuple[str, datetime]]:
    """The events a run in this state has produced so far, with the time of each.

    ``completed`` counts once the run is final: the worker uploads every
    artifact before it reports the final status, so a final run's artifacts
    are stored (a run failed by the monitor has none still to come).
    """
    out: list[tuple[str, datetime]] = []
    if started_at is not None:
        out.append((STARTED, started_at))
    if status >= 10 and finished_at is not None:
        out.append((COMPLETED, finished_at))
        if status == 20:
            out.append((ERRORED, finished_at))
    return out


def _ts(dt: datetime | None, *, precise: bool = False) -> str | None:
    if dt is None:
        return None
    dt = dt.astimezone(UTC)
    if precise:
        return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return dt.isoformat(timespec="seconds").replace("+00:00", "Z")


def build(
    event_type: str,
    *,
    webhook_id: int,
    webhook_name: str,
    run: Mapping[str, Any],
    at: datetime,
) -> str:
    """The body of one delivery: ``run`` holds the run row plus job, environment and
    project names (``job_name``, ``environment_name``, ``dbt_version``, ``project_name``)."""
    status = int(run["status"])
    data: dict[str, Any] = {
        "jobId": str(run["job_id"]),
        "jobName": run["job_name"],
        "runId": str(run["id"]),
        "environmentId": str(run["environment_id"]),
        "environmentName": run["environment_name"],
        "dbtVersion": run["dbt_version"],
        "projectName": run["project_name"],
        "projectId": str(run["project_id"]),
        "runStatus": _RUN_STATUS.get(status, str(status)),
        "runStatusCode": status,
        "runStatusMessage": str(run["status_message"]),  # dbt Cloud sends "None" when empty
        "runReason": run["cause"],
        "runStartedAt": _ts(run["started_at"]),
    }
    if event_type == STARTED:
        data["runStatus"], data["runStatusCode"] = "Running", 3
    elif event_type == COMPLETED:
        data["runFinishedAt"] = _ts(run["finished_at"])
    elif event_type == ERRORED:
        data["runErroredAt"] = _ts(run["finished_at"])
    body = {
        "accountId": int(run["account_id"]),
        "webhooksID": subscription_id(webhook_id),
        "eventId": event_id(int(run["id"]), event_type),
        "timestamp": _ts(at, precise=True),
        "eventType": event_type,
        "webhookName": webhook_name,
        "data": data,
    }
    return json.dumps(body, separators=(",", ":"))


def build_test(*, webhook_id: int, webhook_name: str, account_id: int, event_id: str,
               at: datetime) -> str:
    """The body of a test delivery: the envelope of a real event, no run."""
    body = {
        "accountId": account_id,
        "webhooksID": subscription_id(webhook_id),
        "eventId": event_id,
        "timestamp": _ts(at, precise=True),
        "eventType": TEST,
        "webhookName": webhook_name,
        "data": {},
    }
    return json.dumps(body, separators=(",", ":"))


def sign(secret: str, body: bytes) -> str:
    """The ``Authorization`` header value of a delivery."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does (used by tests and documented for users)."""
    return hmac.compare_digest(sign(secret, body), signature or "")
