"""The OpenAPI description: current, valid, and true to the server under schemathesis.

Schemathesis generates requests for every v2 operation from the description
(ids narrowed to a tenant's real objects plus a missing one, so requests get
past the 404s) and checks each answer: never a 5xx, a described status, the
described content type, and a body that matches the schema.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from server.gateway.rest.openapi import PATH, build, render
from server.models import RunStatus
from server.platform import Platform
from tests.factories import make_tenant
from tests.rest.conftest import Api, Gateway, finish_run, queued_run

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
MISSING = 999_999_999


def test_checked_in_description_is_current_and_valid() -> None:
    assert PATH.read_text() == render(), "run: python -m server.gateway.rest.openapi"
    validate(json.loads(PATH.read_text()))


async def test_served_description(api: Api) -> None:
    r = await api.get("/api/v2/openapi.json")
    assert r.status == 200 and r.json == build()


def _narrow(spec: dict[str, Any], ids: dict[str, list[int]]) -> dict[str, Any]:
    """The description with path ids limited to ``ids`` (schemathesis would guess at random)."""
    spec = copy.deepcopy(spec)
    for item in spec["paths"].values():
        for op in item.values():
            for p in op.get("parameters", []):
                if p["in"] == "path" and p["name"] in ids:
                    p["schema"] = {"type": "integer", "enum": ids[p["name"]]}
                if p["name"] == "path":
                    p["schema"] = {"type": "string", "enum": [
                        "manifest.json", "run_results.json", "compiled/a.sql", "missing.json",
                        "../secret", "a b.json",
                    ]}
    return spec


def _fuzz(spec: dict[str, Any], url: str, token: str, examples: int) -> list[str]:
    schema = schemathesis.openapi.from_dict(spec)
    session = requests.Session()
    session.trust_env = False
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()

        @given(op.as_strategy())
        @settings(max_examples=examples, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(
                base_url=url, session=session, headers={"Authorization": f"Token {token}"},
                checks=CHECKS,
            )

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report
            failures.append(f"{op.method.upper()} {op.path}: {exc}"[:3000])
    return failures


async def test_schemathesis_finds_no_server_error_and_no_drift(
    gateway: Gateway, platform: Platform
) -> None:
    t = await make_tenant()
    done = await finish_run(platform, await queued_run(t),
                            files={"manifest.json": b"{}", "run_results.json": b"{}",
                                   "compiled/a.sql": b"select 1"})
    failed = await finish_run(platform, await queued_run(t), RunStatus.ERROR, message="x")
    queued = await queued_run(t)
    spec = _narrow(build(), {
        "account_id": [t.account.id, MISSING],
        "job_id": [t.job.id, MISSING],
        "run_id": [done.id, failed.id, queued.id, MISSING],
    })
    failures = await asyncio.to_thread(_fuzz, spec, gateway.url, t.token, 25)
    assert not failures, "\n\n".join(failures)
