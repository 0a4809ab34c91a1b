"""``kiln up --demo``: the demo account, project, environments and job, idempotently.

Writes ``<data-dir>/demo.json`` (mode 0600: it holds a token) with GraphQL ids
and integer ``_pk`` ids. A restart reuses everything and issues a fresh
token only when the stored one no longer works.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tortoise.transactions import in_transaction

from server.config import Settings
from server.ids import to_global_id
from server.models import (
    Account,
    Connection,
    Credentials,
    Environment,
    Job,
    Membership,
    Project,
    User,
)
from server.services import accounts

DEMO_ACCOUNT = "demo"
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "kiln-demo-password"


def examples_dir() -> Path:
    """The bundled ``examples/shop`` project (repository checkout or KILN_EXAMPLES_DIR)."""
    candidates = [
        Path(os.environ["KILN_EXAMPLES_DIR"]) if os.environ.get("KILN_EXAMPLES_DIR") else None,
        Path(__file__).resolve().parents[1] / "examples",
        Path.cwd() / "examples",
    ]
    for c in candidates:
        if c is not None and (c / "shop" / "dbt_project.yml").is_file():
            return c.resolve()
    raise FileNotFoundError(
        "cannot find examples/shop (run from the repository checkout or set KILN_EXAMPLES_DIR)"
    )


async def ensure_demo(settings: Settings) -> dict[str, Any]:
    path = settings.data_dir / "demo.json"
    previous: dict[str, Any] = {}
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = {}
    shop = examples_dir() / "shop"
    warehouse = settings.data_dir / "warehouse"
    warehouse.mkdir(parents=True, exist_ok=True)

    async with in_transaction():
        account = await Account.get_or_none(name=DEMO_ACCOUNT)
        if account is None:
            account = await Account.create(name=DEMO_ACCOUNT)
        user = await User.get_or_none(email=DEMO_EMAIL)
        if user is None:
            user = await accounts.create_user(DEMO_EMAIL, name="Demo User", password=DEMO_PASSWORD)
        if not await Membership.exists(account_id=account.id, user_id=user.id):
            await Membership.create(account=account, user=user, role="owner")
        project, _ = await Project.get_or_create(
            account=account,
            name="shop",
            defaults={"bundled_path": str(shop), "description": "The demo shop project"},
        )
        if project.bundled_path != str(shop):  # checkout moved
            project.bundled_path = str(shop)
            await project.save(update_fields=["bundled_path", "updated_at"])
        conn, _ = await Connection.get_or_create(
            account=account,
            name="DuckDB (demo)",
            defaults={
                "adapter_type": "duckdb",
                "details": {"path": str(warehouse / "shop.duckdb")},
            },
        )
        creds, _ = await Credentials.get_or_create(
            account=account,
            project=project,
            user=None,
            name="production",
            defaults={"adapter_type": "duckdb", "fields_json": {"schema": "main"}},
        )
        await Environment.get_or_create(
            account=account,
            project=project,
            name="Development",
            defaults={"kind": "development", "connection": conn, "target_name": "dev"},
        )
        prod, _ = await Environment.get_or_create(
            account=account,
            project=project,
            name="Production",
            defaults={
                "kind": "deployment",
                "deployment_type": "production",
                "connection": conn,
                "credentials": creds,
                "target_name": "prod",
            },
        )
        job = await Job.filter(
            account=account, environment=prod, name="build", deleted_at=None
        ).first()
        if job is None:
            job = await Job.create(
                account=account,
                project=project,
                environment=prod,
                name="build",
                steps=["dbt build"],
            )

    token = previous.get("token")
    live = await accounts.token_by_secret(token) if token else None
    if live is None or live.account_id != account.id:  # type: ignore[attr-defined]
        # a personal token of the demo user: it also opens IDE sessions, which belong to users
        issued = await accounts.create_token(account, name="demo", role="owner", user=user)
        token = issued.secret

    info = {
        "url": settings.api_url,
        "token": token,
        "email": DEMO_EMAIL,
        "password": DEMO_PASSWORD,
        "account_id": to_global_id("Account", account.id),
        "account_pk": account.id,
        "project_id": to_global_id("Project", project.id),
        "project_pk": project.id,
        "environment_id": to_global_id("Environment", prod.id),
        "environment_pk": prod.id,
        "job_id": to_global_id("Job", job.id),
        "job_pk": job.id,
    }
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=2)
    os.replace(tmp, path)
    return info
