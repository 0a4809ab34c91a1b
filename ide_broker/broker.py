"""The IDE broker: one develop server per (user, project), from pending to stopped.

States: ``pending`` (spawning) → ``ready`` (answering) → ``stopping`` →
``stopped``; ``failed`` (with ``failure_reason``) when a start goes wrong.
The row of a (user, project) is reused across sessions, so "the user's
session for this project" is always one row.

Rules:

* Only a user (a login session or a personal token) with the ``develop``
  permission may start one; a session is visible only to its own user:
  another user's session is "not found", never "forbidden".
* ``start_session`` is idempotent: a pending or ready session is returned
  as it is. The start itself runs in the background; every state change is
  committed with ``NOTIFY ide_events`` so the browser follows it live.
* The develop server's secret is random per start, kept encrypted on the row
  (the gateway presents it) and handed to the server in its environment.
* Activity (bytes through the proxy) moves ``last_activity_at`` at most once
  per ``ACTIVITY_THROTTLE`` seconds; the culler stops sessions idle longer
  than ``KILN_IDE_IDLE_TIMEOUT``. Workspaces always stay.
* On start, :meth:`Broker.reattach` resolves sessions a previous process left
  pending, ready or stopping: a live, answering server is kept; anything
  else is stopped and marked so. No orphan develop server survives that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from ide_broker.spawners.base import Endpoint, Spawner, SpawnSpec
from server import crypto
from server.models import Credentials, Environment, IdeSession, Project, User
from server.platform import Platform
from server.services.actor import Actor
from server.services.errors import Forbidden, NotFound
from server.services.permissions import Action

log = logging.getLogger("kiln.ide")
CHANNEL = "ide_events"
ACTIVITY_THROTTLE = 30.0
SPAWN_TIMEOUT = 330.0  # longer than any spawner's own start timeout
LIVE = ("pending", "ready")


class Broker:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._spawners: dict[int, Spawner] = {}
        self._last_touch: dict[int, float] = {}

    # -- spawners ---------------------------------------------------------
    def _spawner(self, spec: SpawnSpec, kind: str) -> Spawner:
        if kind == "kubernetes":
            from ide_broker.spawners.kubernetes import KubernetesSpawner

            return KubernetesSpawner.from_settings(spec, self.platform.settings)
        from ide_broker.spawners.local import LocalSpawner

        return LocalSpawner(spec, data_dir=self.platform.settings.data_dir)

    async def _spec(self, session: IdeSession, secret: str) -> SpawnSpec:
        project = await Project.get(id=session.project_id)  # type: ignore[attr-defined]
        user = await User.get(id=session.user_id)  # type: ignore[attr-defined]
        output, target = await development_target(self.platform, project, user)
        from server.profiles import render_profiles

        profiles = render_profiles(
            profile=project.name,
            target=target,
            adapter=output["type"],
            details={k: v for k, v in output.items() if k != "type"},
            fields={},
            secrets={},
            threads=int(output.get("threads", 4)),
        )
        return SpawnSpec(
            session_id=session.id,
            account_id=project.account_id,  # type: ignore[attr-defined]
            user_id=user.id,
            project_id=project.id,
            secret=secret,
            workspace_key=f"{project.account_id}/{user.id}/{project.id}",  # type: ignore[attr-defined]
            project_source=project.repository_url or project.bundled_path or "",
            project_subdirectory=project.subdirectory or "",
            default_branch=project.default_branch or "main",
            profiles_yml=profiles,
            profile_output=output,
            profile_target=target,
            env={
                "KILN_GIT_AUTHOR_NAME": user.name or user.email,
                "KILN_GIT_AUTHOR_EMAIL": user.email,
            },
        )

    # -- state changes -----------------------------------------------------
    async def _set_state(self, session_id: int, state: str, **fields: Any) -> IdeSession:
        await IdeSession.filter(id=session_id).update(state=state, **fields)
        session = await IdeSession.get(id=session_id)
        payload = json.dumps(
            {
                "session": session.id,
                "user": session.user_id,  # type: ignore[attr-defined]
                "account": session.account_id,
                "state": state,
            }
        )  # type: ignore[attr-defined]
        async with self.platform.db.acquire() as conn:
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        return session

    # -- the API -------------------------------------------------------------
    async def start_session(self, actor: Actor, project_id: int) -> IdeSession:
        actor.require(Action.DEVELOP)
        if actor.user_id is None:
            raise Forbidden("IDE sessions belong to users: log in or use a personal token")
        project = await actor.get(Project, project_id, what="project")
        session, _ = await IdeSession.get_or_create(
            user_id=actor.user_id,
            project_id=project.id,
            defaults={
                "account_id": actor.account_id,
                "state": "stopped",
                "spawner": self.platform.settings.spawner,
            },
        )
        claimed = await IdeSession.filter(id=session.id, state__not_in=(*LIVE, "stopping")).update(
            state="pending",
            failure_reason=None,
            spawner=self.platform.settings.spawner,
            started_at=None,
            stopped_at=None,
            endpoint_host=None,
            endpoint_port=None,
        )
        if not claimed:
            return await IdeSession.get(id=session.id)  # already pending/ready/stopping
        secret = crypto.new_token("ide")
        await IdeSession.filter(id=session.id).update(secret=self.platform.vault.encrypt(secret))
        session = await self._set_state(session.id, "pending")
        self._tasks[session.id] = asyncio.create_task(self._spawn(session, secret))
        return session

    async def _spawn(self, session: IdeSession, secret: str) -> None:
        extra = {
            "session_id": session.id,
            "account_id": session.account_id,  # type: ignore[attr-defined]
            "user_id": session.user_id,
        }  # type: ignore[attr-defined]
        try:
            spec = await self._spec(session, secret)
            spawner = self._spawner(spec, session.spawner)
            self._spawners[session.id] = spawner
            endpoint = await spawner.start()
            await IdeSession.filter(id=session.id).update(spawner_state=spawner.get_state())
            await wait_healthy(endpoint, timeout=30)
            now = datetime.now(UTC)
            await self._set_state(
                session.id,
                "ready",
                endpoint_host=endpoint.host,
                endpoint_port=endpoint.port,
                started_at=now,
                last_activity_at=now,
            )
            log.info("ide session ready", extra=extra)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("ide session failed to start: %s", exc, extra=extra)
            spawner = self._spawners.pop(session.id, None)
            if spawner is not None:
                with contextlib.suppress(Exception):
                    await spawner.stop(now=True)
            await self._set_state(
                session.id, "failed", failure_reason=str(exc)[:2000], stopped_at=datetime.now(UTC)
            )
        finally:
            self._tasks.pop(session.id, None)

    async def get_session(self, actor: Actor, session_id: int) -> IdeSession:
        actor.require(Action.READ)
        session = await IdeSession.get_or_none(
            id=session_id, account_id=actor.account_id, user_id=actor.user_id
        )
        if session is None or actor.user_id is None:
            raise NotFound("IDE session not found")
        return session

    async def stop_session(self, actor: Actor, session_id: int) -> IdeSession:
        session = await self.get_session(actor, session_id)
        return await self._stop(session, reason=None)

    async def _stop(self, session: IdeSession, reason: str | None) -> IdeSession:
        task = self._tasks.pop(session.id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if session.state in ("stopped", "failed") and task is None:
            return session
        await self._set_state(session.id, "stopping")
        spawner = self._spawners.pop(session.id, None) or self._recorded_spawner(session)
        try:
            await spawner.stop()
        except Exception as exc:
            log.warning("stopping develop server failed: %s", exc, extra={"session_id": session.id})
        return await self._set_state(
            session.id,
            "stopped",
            stopped_at=datetime.now(UTC),
            endpoint_host=None,
            endpoint_port=None,
            failure_reason=reason,
        )

    def touch(self, session_id: int, nbytes: int = 0) -> None:
        """Record activity; writes at most once per ACTIVITY_THROTTLE seconds per session."""
        now = time.monotonic()
        if now - self._last_touch.get(session_id, 0.0) < ACTIVITY_THROTTLE:
            return
        self._last_touch[session_id] = now
        task = asyncio.create_task(self._record_activity(session_id))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    @staticmethod
    async def _record_activity(session_id: int) -> None:
        await IdeSession.filter(id=session_id).update(last_activity_at=datetime.now(UTC))

    async def target(self, user_id: int, session_id: int) -> tuple[IdeSession, str] | None:
        """(session, secret) for the gateway, if ``user_id`` owns a session with that id."""
        session = await IdeSession.get_or_none(id=session_id, user_id=user_id)
        if session is None:
            return None
        secret = self.platform.vault.decrypt(session.secret) if session.secret else ""
        return session, secret

    # -- background duties ---------------------------------------------------
    def _recorded_spawner(self, session: IdeSession) -> Spawner:
        """A spawner for a session started elsewhere (another process, before a restart)."""
        spec = SpawnSpec(
            session_id=session.id,
            account_id=session.account_id,  # type: ignore[attr-defined]
            user_id=session.user_id,  # type: ignore[attr-defined]
            project_id=session.project_id,  # type: ignore[attr-defined]
            secret="",
            workspace_key="",
            project_source="",
        )
        spawner = self._spawner(spec, session.spawner)
        spawner.load_state(session.spawner_state or {})
        return spawner

    async def reattach(self) -> dict[str, int]:
        counts = {"kept": 0, "stopped": 0}
        for session in await IdeSession.filter(
            state__in=(*LIVE, "stopping"), spawner=self.platform.settings.spawner
        ):
            if session.id in self._tasks:
                continue
            shared = session.spawner != "local"  # several gateways share pod-backed sessions
            recent = datetime.now(UTC) - session.updated_at < timedelta(seconds=SPAWN_TIMEOUT)
            if shared and session.state == "pending" and recent:
                continue  # another gateway may be starting it right now
            spawner = self._recorded_spawner(session)
            alive = session.state == "ready" and await spawner.poll() is None
            if alive and session.endpoint_host and session.endpoint_port:
                try:
                    await wait_healthy(Endpoint(session.endpoint_host, session.endpoint_port), 5)
                    self._spawners[session.id] = spawner
                    counts["kept"] += 1
                    continue
                except TimeoutError:
                    pass
            with contextlib.suppress(Exception):
                await spawner.stop(now=True)
            await self._set_state(
                session.id,
                "stopped",
                stopped_at=datetime.now(UTC),
                endpoint_host=None,
                endpoint_port=None,
                failure_reason="the develop server was lost while Kiln restarted"
                if session.state != "stopping"
                else None,
            )
            counts["stopped"] += 1
        return counts

    async def cull(self, now: datetime, idle_timeout: float) -> int:
        cutoff = now - timedelta(seconds=idle_timeout)
        idle = await IdeSession.filter(state="ready", last_activity_at__lt=cutoff)
        for session in idle:
            log.info(
                "stopping idle ide session",
                extra={"session_id": session.id, "account_id": session.account_id},
            )  # type: ignore[attr-defined]
            await self._stop(session, reason=None)
        return len(idle)

    async def close(self) -> None:
        """Stop background starts; running develop servers stay (re-attached on restart)."""
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def wait_healthy(endpoint: Endpoint, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(
                    f"{endpoint.url}/healthz", timeout=aiohttp.ClientTimeout(total=2)
                ) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"develop server at {endpoint.url} does not answer")
            await asyncio.sleep(0.05)


async def development_target(
    platform: Platform, project: Project, user: User
) -> tuple[dict[str, Any], str]:
    """The developer's own dbt target: their credentials, their schema or DuckDB file.

    Development never touches production: DuckDB gets a file per developer
    and project; other adapters get the developer's credentials, else a
    ``dbt_<user>`` schema on the development environment's connection.
    """
    env = await Environment.filter(
        project_id=project.id, kind="development", deleted_at=None
    ).first()
    if env is None:
        env = await Environment.filter(project_id=project.id, deleted_at=None).first()
    conn = await env.connection if env is not None else None
    target = (env.target_name if env is not None else None) or "dev"
    threads = env.threads if env is not None else 4
    if conn is None:
        path = platform.settings.data_dir / "warehouse" / "dev" / f"{project.id}-{user.id}.duckdb"
        path.parent.mkdir(parents=True, exist_ok=True)
        return {"type": "duckdb", "path": str(path), "threads": threads}, target
    output: dict[str, Any] = {"type": conn.adapter_type, **(conn.details or {}), "threads": threads}
    if conn.adapter_type == "duckdb":
        path = (
            platform.settings.data_dir
            / "warehouse"
            / "dev"
            / (f"{project.account_id}-{project.id}-{user.id}.duckdb")
        )  # type: ignore[attr-defined]
        path.parent.mkdir(parents=True, exist_ok=True)
        output["path"] = str(path)
        return output, target
    own = await Credentials.filter(project_id=project.id, user_id=user.id).first()
    creds = own or (await env.credentials if env is not None else None)
    if creds is not None:
        output.update(creds.fields_json or {})
        if creds.secrets:
            output.update(json.loads(platform.vault.decrypt(creds.secrets)))
    if own is None:  # shared credentials: still a schema of the developer's own
        local = "".join(c if c.isalnum() else "_" for c in user.email.split("@")[0].lower())
        output["schema"] = f"dbt_{local}"
    return output, target
