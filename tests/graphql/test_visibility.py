"""Within one account: what each member may see of others' tokens, credentials, IDE sessions."""

from __future__ import annotations

from server.models import Credentials, IdeSession, Job
from server.services import accounts
from tests.factories import make_tenant
from tests.graphql.conftest import gid


async def test_personal_objects_of_other_members(api, platform) -> None:
    t = await make_tenant()
    dev = await accounts.create_user(f"dev-{t.account.id}@example.com")
    other = await accounts.create_user(f"other-{t.account.id}@example.com")
    await accounts.add_member(t.account, dev, "developer")
    await accounts.add_member(t.account, other, "developer")
    dev_token = (
        await accounts.create_token(t.account, name="d", role="developer", user=dev)
    ).secret
    others_token = await accounts.create_token(t.account, name="o", role="developer", user=other)
    own_creds = await Credentials.create(
        account_id=t.account.id, project_id=t.project.id, user_id=dev.id, adapter_type="duckdb"
    )
    others_creds = await Credentials.create(
        account_id=t.account.id, project_id=t.project.id, user_id=other.id, adapter_type="duckdb"
    )
    own_ide = await IdeSession.create(
        account_id=t.account.id, user_id=dev.id, project_id=t.project.id
    )
    others_ide = await IdeSession.create(
        account_id=t.account.id, user_id=other.id, project_id=t.project.id
    )
    data = await api.data(
        "query($ids: [ID!]!) { tokens { edges { node { name } } }"
        " credentials { edges { node { id user { email } } } } nodes(ids: $ids) { id } }",
        {
            "ids": [
                gid("IdeSession", own_ide.id),
                gid("IdeSession", others_ide.id),
                gid("Credentials", others_creds.id),
                gid("Token", others_token.token.id),
            ]
        },
        token=dev_token,
    )
    assert [e["node"]["name"] for e in data["tokens"]["edges"]] == ["d"]  # own personal only
    creds = {e["node"]["id"] for e in data["credentials"]["edges"]}
    assert gid("Credentials", own_creds.id) in creds
    assert gid("Credentials", others_creds.id) not in creds
    assert [n and n["id"] for n in data["nodes"]] == [
        gid("IdeSession", own_ide.id),
        None,
        None,
        None,
    ]
    # someone else's development credentials: not found, not forbidden
    res = await api.mutate(
        "mutation($id: ID!) { deleteCredentials(id: $id) { errors { code } } }",
        {"id": gid("Credentials", others_creds.id)},
        token=dev_token,
    )
    assert res["errors"] == [{"code": "not_found"}]
    # the owner sees everything
    data = await api.data("{ tokens { totalCount } credentials { totalCount } }", token=t.token)
    assert data == {"tokens": {"totalCount": 3}, "credentials": {"totalCount": 3}}


async def test_deleting_a_project_stops_its_jobs(api, tenant) -> None:
    await Job.filter(id=tenant.job.id).update(cron="0 * * * *")
    res = await api.mutate(
        "mutation($id: ID!) { deleteProject(id: $id) { errors { code } } }",
        {"id": gid("Project", tenant.project.id)},
        token=tenant.token,
    )
    assert res["errors"] == []
    job = await Job.get(id=tenant.job.id)
    assert job.deleted_at is not None and job.cron is None
    data = await api.data(
        "{ jobs { totalCount } environments { totalCount } projects { totalCount } }",
        token=tenant.token,
    )
    assert data == {
        "jobs": {"totalCount": 0},
        "environments": {"totalCount": 0},
        "projects": {"totalCount": 0},
    }
    trig = await api.mutate(
        "mutation($j: ID!) { triggerJobRun(jobId: $j) { errors { code } } }",
        {"j": gid("Job", tenant.job.id)},
        token=tenant.token,
    )
    assert trig["errors"] == [{"code": "not_found"}]


async def test_visible_matches_the_reads(platform) -> None:
    from server.services import queries
    from server.services.actor import Actor

    a, b = await make_tenant(), await make_tenant()
    ide = await IdeSession.create(
        account_id=a.account.id, user_id=a.user.id, project_id=a.project.id
    )
    db = platform.db
    assert await queries.visible(a.actor(), db, "job", a.job.id)
    assert not await queries.visible(b.actor(), db, "job", a.job.id)
    assert await queries.visible(a.actor("viewer"), db, "ide_session", ide.id)  # their own
    stranger = Actor(account_id=a.account.id, role="developer", user_id=b.user.id)
    assert not await queries.visible(stranger, db, "ide_session", ide.id)
    await Job.filter(id=a.job.id).update(deleted_at=ide.created_at)
    assert not await queries.visible(a.actor(), db, "job", a.job.id)
