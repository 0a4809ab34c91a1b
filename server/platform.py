"""The composed core of one Kiln process: settings, database, object store, vault.

Every long-running command builds exactly one :class:`Platform` and passes
it down; nothing else holds process-wide state. ``open`` starts the embedded
PostgreSQL when no database URL is configured and applies migrations when
asked; ``close`` releases everything in reverse order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from server import crypto, embedded_pg
from server.config import Settings
from server.db import Database, migrate
from server.objectstore import ObjectStore, open_store

log = logging.getLogger("kiln.platform")


def resolve_database(settings: Settings) -> tuple[str, embedded_pg.EmbeddedPostgres | None]:
    """The database URL to use, starting (or joining) the embedded server if needed."""
    if settings.database_url:
        return settings.database_url, None
    pg = embedded_pg.start(settings.data_dir)
    return pg.url, pg


@dataclass
class Platform:
    settings: Settings
    db: Database
    store: ObjectStore
    vault: crypto.Vault
    embedded: embedded_pg.EmbeddedPostgres | None = None
    services: dict[str, Any] = field(default_factory=dict)  # long-lived helpers by name

    @classmethod
    async def open(
        cls, settings: Settings, *, apply_migrations: bool = True, pool_size: int = 10
    ) -> Platform:
        keys = crypto.ensure_secret_keys(settings.data_dir, settings.secret_keys)
        settings = settings.with_overrides(secret_keys=keys)
        url, pg = resolve_database(settings)
        try:
            if apply_migrations:
                applied = await migrate(url)
                if applied:
                    log.info("applied migrations: %s", ", ".join(applied))
            db = Database(url)
            await db.open(pool_size=pool_size)
        except BaseException:
            if pg is not None:
                pg.release()
            raise
        store = open_store(settings)
        if settings.s3 is not None:
            await store.ensure_bucket()  # type: ignore[attr-defined]
        return cls(settings=settings, db=db, store=store, vault=crypto.Vault(keys), embedded=pg)

    async def close(self) -> None:
        try:
            if self.settings.launcher == "kubernetes" or self.settings.spawner == "kubernetes":
                from server.kube.runtime import close_shared_runtimes

                await close_shared_runtimes()
            await self.store.close()
            await self.db.close()
        finally:
            if self.embedded is not None:
                self.embedded.release()
                self.embedded = None
