"""Small builders for test data in a fresh account (every test gets its own tenant)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from server.models import Account, Connection, Credentials, Environment, Job, Project, User
from server.services import accounts
from server.services.actor import Actor


@dataclass
class Tenant:
    account: Account
    user: User
    project: Project
    environment: Environment
    job: Job
    token: str

    def actor(self, role: str = "owner") -> Actor:
        return Actor(account_id=self.account.id, role=role, user_id=self.user.id, kind="user")


async def make_tenant(
    *,
    role: str = "owner",
    project_path: str = "/nonexistent",
    adapter: str = "duckdb",
    connection_details: dict | None = None,
    credential_fields: dict | None = None,
    steps: list[str] | None = None,
) -> Tenant:
    tag = uuid.uuid4().hex[:10]
    account = await accounts.create_account(f"acct-{tag}")
    user = await accounts.create_user(f"user-{tag}@example.com", password="password-123")
    await accounts.add_member(account, user, role)
    project = await Project.create(account=account, name="shop", bundled_path=project_path)
    conn = await Connection.create(
        account=account,
        name="wh",
        adapter_type=adapter,
        details=connection_details or {"path": f"/tmp/kiln-test-{tag}.duckdb"},
    )
    creds = await Credentials.create(
        account=account,
        project=project,
        adapter_type=adapter,
        fields_json=credential_fields or {"schema": "main"},
    )
    env = await Environment.create(
        account=account,
        project=project,
        name="Production",
        connection=conn,
        credentials=creds,
        target_name="prod",
    )
    job = await Job.create(
        account=account,
        project=project,
        environment=env,
        name="build",
        steps=steps or ["dbt build"],
    )
    issued = await accounts.create_token(account, name="t", role=role)
    return Tenant(account, user, project, env, job, issued.secret)
