"""Authentication: tokens, browser sessions, websockets, account choice; public parts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from server.models import LoginSession, Token
from server.services import accounts
from server.services.auth import principal_from_params
from tests.factories import make_tenant
from tests.graphql.conftest import gid

ERR = "errors { code field message }"


async def test_token_schemes(api, tenant) -> None:
    for header in (f"Bearer {tenant.token}", f"Token {tenant.token}", f"bearer {tenant.token}"):
        data = await api.data("{ viewer { role } }", headers={"Authorization": header})
        assert data["viewer"]["role"] == "owner", header


async def test_unauthenticated(api, tenant) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic Zm9vOmJhcg=="},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Cookie": "kiln_session=zzz"},
    ):
        body = await api.call("{ runs { totalCount } }", headers=headers)
        assert body["data"] is None, headers
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", headers
    body = await api.call(
        "mutation($j: ID!) { triggerJobRun(jobId: $j) { errors { code } } }",
        {"j": gid("Job", tenant.job.id)},
    )
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert await tenant.job.runs.all().count() == 0


async def test_public_parts(api) -> None:
    data = await api.data("{ version __schema { queryType { name } } }")
    assert data["__schema"]["queryType"]["name"] == "Query" and data["version"]
    from graphql import get_introspection_query

    full = await api.data(get_introspection_query(descriptions=True))  # what GraphiQL sends
    names = {t["name"] for t in full["__schema"]["types"]}
    assert {"Run", "Job", "Node", "RunConnection", "UserError"} <= names


async def test_expired_and_revoked_tokens(api, tenant) -> None:
    issued = await accounts.create_token(tenant.account, name="short", role="viewer")
    assert (await api.data("{ viewer { role } }", token=issued.secret))["viewer"]["role"]
    await Token.filter(id=issued.token.id).update(expires_at=datetime.now(UTC) - timedelta(1))
    from server.services import auth

    auth.forget_credentials()  # an expiry set behind the API's back (the API caches ≤ 5 s)
    err = await api.error("{ viewer { role } }", token=issued.secret)
    assert err["extensions"]["code"] == "UNAUTHENTICATED"
    other = await accounts.create_token(tenant.account, name="gone", role="viewer")
    assert (await api.data("{ viewer { role } }", token=other.secret))["viewer"]["role"]
    revoke = await api.mutate(
        f"mutation($id: ID!) {{ revokeToken(id: $id) {{ {ERR} }} }}",
        {"id": gid("Token", other.token.id)},
        token=tenant.token,
    )
    assert revoke["errors"] == []
    err = await api.error("{ viewer { role } }", token=other.secret)
    assert err["extensions"]["code"] == "UNAUTHENTICATED"


async def test_login_cookie_logout(api, tenant) -> None:
    bad = await api.mutate(
        f'mutation {{ login(email: "{tenant.user.email}", password: "wrong") {{ user {{ id }}'
        f" {ERR} }} }}"
    )
    assert bad["user"] is None and bad["errors"][0]["code"] == "unauthenticated"
    nobody = await api.mutate(
        f'mutation {{ login(email: "nobody@example.com", password: "x") {{ {ERR} }} }}'
    )
    assert nobody["errors"][0]["message"] == bad["errors"][0]["message"]
    resp = await api.client.post(
        "/graphql",
        json={
            "query": (
                f'mutation {{ login(email: "{tenant.user.email.upper()}", password: "password-123")'
                f" {{ user {{ email }} {ERR} }} }}"
            )
        },
    )
    body = await resp.json()
    assert body["data"]["login"]["user"]["email"] == tenant.user.email
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("kiln_session=kilnses_") and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie and "Path=/" in cookie and "Secure" not in cookie
    secret = resp.cookies["kiln_session"].value
    session = await LoginSession.get(user_id=tenant.user.id)
    assert secret not in session.token_hash  # only a hash is stored
    api.client.session.cookie_jar.clear()
    headers = {"Cookie": f"kiln_session={secret}"}
    data = await api.data("{ viewer { user { email } role token { id } } }", headers=headers)
    assert data["viewer"] == {"user": {"email": tenant.user.email}, "role": "owner", "token": None}
    out = await api.mutate(f"mutation {{ logout {{ ok {ERR} }} }}", headers=headers)
    assert out["ok"] is True
    err = await api.error("{ viewer { role } }", headers=headers)
    assert err["extensions"]["code"] == "UNAUTHENTICATED"
    # behind a TLS proxy the cookie is Secure
    resp = await api.client.post(
        "/graphql",
        json={
            "query": f'mutation {{ login(email: "{tenant.user.email}",'
            f' password: "password-123") {{ {ERR} }} }}'
        },
        headers={"X-Forwarded-Proto": "https"},
    )
    assert "Secure" in resp.headers["Set-Cookie"]


async def test_session_user_in_several_accounts(api, platform) -> None:
    a, b = await make_tenant(), await make_tenant()
    await accounts.add_member(b.account, a.user, "viewer")
    resp = await api.client.post(
        "/graphql",
        json={
            "query": (
                f'mutation {{ login(email: "{a.user.email}", password: "password-123")'
                f" {{ {ERR} }} }}"
            )
        },
    )
    secret = resp.cookies["kiln_session"].value
    api.client.session.cookie_jar.clear()
    cookie = {"Cookie": f"kiln_session={secret}"}
    err = await api.error("{ runs { totalCount } }", headers=cookie)
    assert err["extensions"]["code"] == "ACCOUNT_REQUIRED"
    v = await api.data(
        "{ viewer { account { id } role accounts { role account { name } } } }", headers=cookie
    )
    assert v["viewer"]["account"] is None and v["viewer"]["role"] is None
    assert sorted(x["role"] for x in v["viewer"]["accounts"]) == ["owner", "viewer"]
    in_b = await api.data(
        "{ viewer { role account { name } } }",
        headers={**cookie, "X-Kiln-Account": gid("Account", b.account.id)},
    )
    assert in_b["viewer"] == {"role": "viewer", "account": {"name": b.account.name}}
    arg = await api.data(
        "query($a: ID) { jobs(accountId: $a) { totalCount } }",
        {"a": gid("Account", a.account.id)},
        headers=cookie,
    )
    assert arg["jobs"]["totalCount"] == 1
    refused = await api.mutate(
        f'mutation {{ createProject(input: {{name: "x", repositoryUrl: "https://e.com/x.git"}})'
        f" {{ {ERR} }} }}",
        headers={**cookie, "X-Kiln-Account": gid("Account", b.account.id)},
    )
    assert refused["errors"][0]["code"] == "forbidden"  # viewer in B
    bad = await api.error(
        "{ runs { totalCount } }", headers={**cookie, "X-Kiln-Account": "not-an-id"}
    )
    assert bad["extensions"]["code"] == "BAD_USER_INPUT"


async def test_principal_from_params(tenant) -> None:
    for params in (
        {"authorization": f"Bearer {tenant.token}"},
        {"token": tenant.token},
        {"Authorization": f"Token {tenant.token}"},
    ):
        p = await principal_from_params(params)
        assert p is not None and p.actor().account_id == tenant.account.id, params
    for params in (None, {}, {"token": "nope"}, {"authorization": "Basic x"}, {"token": 5}):
        assert await principal_from_params(params) is None, params


async def test_query_over_websocket_with_connection_init(api, tenant) -> None:
    async with api.client.ws_connect("/graphql", protocols=["graphql-transport-ws"]) as ws:
        await ws.send_json(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {tenant.token}"}}
        )
        assert (await ws.receive_json(timeout=5))["type"] == "connection_ack"
        await ws.send_json(
            {
                "type": "subscribe",
                "id": "1",
                "payload": {"query": "{ viewer { role } account { name } }"},
            }
        )
        msg = await ws.receive_json(timeout=5)
        assert msg["type"] == "next", msg
        assert msg["payload"]["data"]["viewer"]["role"] == "owner"
    async with api.client.ws_connect("/graphql", protocols=["graphql-transport-ws"]) as ws:
        await ws.send_json({"type": "connection_init", "payload": {}})
        assert (await ws.receive_json(timeout=5))["type"] == "connection_ack"
        await ws.send_json(
            {"type": "subscribe", "id": "1", "payload": {"query": "{ viewer { role } }"}}
        )
        msg = await ws.receive_json(timeout=5)
        text = json.dumps(msg)
        assert "UNAUTHENTICATED" in text, msg
