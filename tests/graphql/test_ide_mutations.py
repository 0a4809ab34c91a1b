"""startIdeSession / stopIdeSession / ideSession over real HTTP, with a real broker.

The broker spawns real develop servers (LocalSpawner, ``kiln develop``) on a
copy of the example project; the rules under test are the broker's (DEVELOP
permission, sessions belong to users, others' sessions are not found), seen
through the API.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ide_broker.broker import Broker
from server.models import IdeSession
from server.services import accounts
from tests.conftest import ROOT
from tests.factories import make_tenant
from tests.graphql.conftest import Api, gid

START = """mutation($p: ID!) { startIdeSession(projectId: $p) {
  session { id state failureReason project { id } user { email } }
  errors { code message field } } }"""
STOP = """mutation($id: ID!) { stopIdeSession(id: $id) {
  session { id state } errors { code message field } } }"""
BY_ID = "query($id: ID) { ideSession(id: $id) { id state } }"
BY_PROJECT = "query($p: ID) { ideSession(projectId: $p) { id state } }"


@pytest.fixture
async def broker(platform) -> AsyncIterator[Broker]:
    previous = platform.services.get("ide_broker")
    b = previous or Broker(platform)
    platform.services["ide_broker"] = b
    started: set[int] = set(await IdeSession.all().values_list("id", flat=True))
    yield b
    for s in await IdeSession.filter(state__in=("pending", "ready")).exclude(id__in=started):
        await b._stop(s, reason=None)
    if previous is None:
        await b.close()
        platform.services.pop("ide_broker", None)


async def developer(tmp_path: Path, role: str = "developer"):
    copy = tmp_path / "shop"
    if not copy.exists():
        shutil.copytree(
            ROOT / "examples" / "shop", copy, ignore=shutil.ignore_patterns("target", "logs")
        )
    t = await make_tenant(role=role, project_path=str(copy))
    personal = await accounts.create_token(t.account, name="me", role=role, user=t.user)
    return t, personal.secret


async def wait_for(api: Api, token: str, session_id: str, state: str, timeout: float = 90):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        s = (await api.data(BY_ID, {"id": session_id}, token=token))["ideSession"]
        if s["state"] == state or asyncio.get_running_loop().time() > deadline:
            return s
        await asyncio.sleep(0.1)


async def test_start_resume_lookup_and_stop(api: Api, broker: Broker, tmp_path: Path) -> None:
    t, token = await developer(tmp_path)
    project = gid("Project", t.project.id)
    assert (await api.data(BY_PROJECT, {"p": project}, token=token))["ideSession"] is None

    first = await api.mutate(START, {"p": project}, token=token)
    assert first["errors"] == []
    session = first["session"]
    assert session["state"] in ("pending", "ready")
    assert session["project"]["id"] == project
    assert session["user"]["email"] == t.user.email

    again = await api.mutate(START, {"p": project}, token=token)  # idempotent: the same session
    assert again["session"]["id"] == session["id"]

    ready = await wait_for(api, token, session["id"], "ready")
    assert ready["state"] == "ready", ready
    by_project = (await api.data(BY_PROJECT, {"p": project}, token=token))["ideSession"]
    assert by_project == {"id": session["id"], "state": "ready"}

    stopped = await api.mutate(STOP, {"id": session["id"]}, token=token)
    assert stopped["errors"] == [] and stopped["session"]["state"] == "stopped"
    resumed = await api.mutate(START, {"p": project}, token=token)  # the same row, started again
    assert resumed["session"]["id"] == session["id"]
    assert resumed["session"]["state"] in ("pending", "ready")
    await api.mutate(STOP, {"id": session["id"]}, token=token)


async def test_roles_tokens_and_other_users(api: Api, broker: Broker, tmp_path: Path) -> None:
    t, _ = await developer(tmp_path)
    project = gid("Project", t.project.id)

    # a viewer may not develop; the refusal is a UserError, not a GraphQL error
    viewer = await accounts.create_user(f"viewer-{t.account.id}@example.com", password="pw-123456")
    await accounts.add_member(t.account, viewer, "viewer")
    vtoken = (await accounts.create_token(t.account, name="v", role="viewer", user=viewer)).secret
    refused = await api.mutate(START, {"p": project}, token=vtoken)
    assert refused["session"] is None
    assert refused["errors"][0]["code"] == "forbidden"

    # a service token has no user: sessions belong to users
    refused = await api.mutate(START, {"p": project}, token=t.token)
    assert refused["errors"][0]["code"] == "forbidden"
    assert (await api.data(BY_PROJECT, {"p": project}, token=t.token))["ideSession"] is None

    # another user's session: not found for stop, null for the lookup
    row = await IdeSession.create(
        account_id=t.account.id, user_id=t.user.id, project_id=t.project.id, state="stopped"
    )
    other = await accounts.create_user(f"dev2-{t.account.id}@example.com", password="pw-123456")
    await accounts.add_member(t.account, other, "developer")
    otoken = (await accounts.create_token(t.account, name="o", role="developer", user=other)).secret
    sid = gid("IdeSession", row.id)
    denied = await api.mutate(STOP, {"id": sid}, token=otoken)
    assert denied["errors"][0]["code"] == "not_found"
    assert (await api.data(BY_ID, {"id": sid}, token=otoken))["ideSession"] is None

    # another account's project is not found
    stranger, stoken = await developer(tmp_path)
    missing = await api.mutate(START, {"p": project}, token=stoken)
    assert missing["errors"][0]["code"] == "not_found"
    assert stranger.project.id != t.project.id


async def test_bad_input(api: Api, broker: Broker, tmp_path: Path, platform) -> None:
    t, token = await developer(tmp_path)
    bad = await api.mutate(START, {"p": gid("Job", t.job.id)}, token=token)
    assert bad["errors"][0]["code"] == "invalid" and bad["errors"][0]["field"] == "projectId"

    err = await api.error("{ ideSession { id } }", token=token)
    assert err["extensions"]["code"] == "BAD_USER_INPUT"

    # a process without a broker answers with a UserError
    platform.services.pop("ide_broker")
    try:
        gone = await api.mutate(START, {"p": gid("Project", t.project.id)}, token=token)
    finally:
        platform.services["ide_broker"] = broker
    assert gone["errors"][0]["code"] == "unavailable"


async def test_unauthenticated_is_a_graphql_error(api: Api, broker: Broker) -> None:
    err = await api.error(START, {"p": gid("Project", 1)})
    assert err["extensions"]["code"] == "UNAUTHENTICATED"
