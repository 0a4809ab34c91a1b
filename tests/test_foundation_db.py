"""Migrations and the constraints the data model promises."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from tortoise.exceptions import IntegrityError

from server.db import credentials, migrate, migration_names, pending_migrations
from server.models import Account, Environment, Job, Membership, Project, Run, User


async def test_migrations_apply_on_an_empty_database(make_database) -> None:
    url = make_database()
    conn = await asyncpg.connect(**credentials(url))
    try:
        assert await pending_migrations(conn) == migration_names()
        applied = await migrate(url)
        assert applied == migration_names()
        assert await pending_migrations(conn) == []
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        for t in (
            "account",
            "kiln_user",
            "membership",
            "api_token",
            "project",
            "environment",
            "job",
            "run",
            "run_step",
            "log_line",
            "artifact",
            "ide_session",
            "webhook",
            "webhook_delivery",
            "audit_event",
            "credentials",
            "warehouse_connection",
        ):
            assert t in tables, t
        pk = await conn.fetch(
            """SELECT a.attname FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
               WHERE i.indrelid = 'log_line'::regclass AND i.indisprimary ORDER BY a.attnum"""
        )
        assert [r["attname"] for r in pk] == ["run_id", "seq"]
        assert await migrate(url) == []  # idempotent
    finally:
        await conn.close()


async def _job(platform) -> Job:
    account = await Account.create(name=f"acct-{datetime.now(UTC).timestamp()}")
    project = await Project.create(account=account, name="p", bundled_path="/x")
    env = await Environment.create(account=account, project=project, name="prod")
    return await Job.create(
        account=account, project=project, environment=env, name="j", steps=["dbt build"]
    )


async def test_duplicate_scheduled_run_is_rejected(platform) -> None:
    job = await _job(platform)
    tick = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    common = {
        "account_id": job.account_id,
        "project_id": job.project_id,
        "environment_id": job.environment_id,
        "job": job,
    }
    await Run.create(scheduled_for=tick, **common)
    with pytest.raises(IntegrityError):
        await Run.create(scheduled_for=tick, **common)
    # manual runs have no tick and never collide
    await Run.create(**common)
    await Run.create(**common)
    assert await Run.filter(job=job).count() == 3


async def test_log_line_key_and_membership_unique(platform) -> None:
    job = await _job(platform)
    run = await Run.create(
        account_id=job.account_id,
        project_id=job.project_id,
        environment_id=job.environment_id,
        job=job,
    )
    async with platform.db.acquire() as conn:
        await conn.execute(
            "INSERT INTO log_line (run_id, seq, account_id, ts, message)"
            " VALUES ($1, 1, $2, now(), 'a')",
            run.id,
            job.account_id,
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO log_line (run_id, seq, account_id, ts, message)"
                " VALUES ($1, 1, $2, now(), 'b')",
                run.id,
                job.account_id,
            )
    user = await User.create(email=f"u{run.id}@example.com")
    account = await Account.get(id=job.account_id)
    await Membership.create(account=account, user=user, role="viewer")
    with pytest.raises(IntegrityError):
        await Membership.create(account=account, user=user, role="owner")
