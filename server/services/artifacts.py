"""Run artifacts: what dbt wrote under ``target/`` after each step, kept in the object store.

Keys are ``artifacts/<account>/<run>/<step>/<path>`` (``path`` relative to
``target/``, e.g. ``manifest.json`` or ``compiled/shop/models/x.sql``). The
bytes go to the store first and the :class:`~server.models.Artifact` row
(size, sha256 computed while streaming) is written after, so a row never
points at a missing object; re-uploading the same (run, step, path) replaces
both. Reading is authorized like the run: an actor of another account gets
NotFound, exactly as for the run itself.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

import asyncpg

from server.models import Artifact, Run
from server.objectstore import ObjectNotFound, ObjectStore
from server.objectstore.base import check_key
from server.services.actor import Actor
from server.services.errors import NotFound, ValidationFailed
from server.services.permissions import Action

MAX_PATH = 900
_SAFE = re.compile(r"^[A-Za-z0-9_.\-/ =+@,()\[\]{}~]+$")


def check_path(path: str) -> str:
    """A relative artifact path, or ValidationFailed (no ``..``, no absolute paths)."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH or not _SAFE.match(path):
        raise ValidationFailed(f"invalid artifact path {path!r}", field="path")
    if path.startswith("/") or any(p in ("", ".", "..") for p in path.split("/")):
        raise ValidationFailed(f"invalid artifact path {path!r}", field="path")
    return path


def object_key(account_id: int, run_id: int, step_index: int, path: str) -> str:
    return check_key(f"artifacts/{account_id}/{run_id}/{step_index}/{check_path(path)}")


async def save(
    conn: asyncpg.Connection,
    store: ObjectStore,
    *,
    account_id: int,
    run_id: int,
    step_index: int,
    path: str,
    data: bytes | AsyncIterable[bytes],
) -> dict[str, object]:
    """Store one artifact and record it; returns ``{path, step, size, sha256, key}``."""
    if not 0 <= step_index < 10_000:
        raise ValidationFailed("invalid step", field="step")
    key = object_key(account_id, run_id, step_index, path)
    info = await store.put(key, data)
    await conn.execute(
        "INSERT INTO artifact (account_id, run_id, step_index, path, size, sha256, object_key,"
        " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now())"
        " ON CONFLICT (run_id, step_index, path) DO UPDATE SET size = EXCLUDED.size,"
        " sha256 = EXCLUDED.sha256, object_key = EXCLUDED.object_key, created_at = now()",
        account_id,
        run_id,
        step_index,
        path,
        info.size,
        info.sha256,
        key,
    )
    return {"path": path, "step": step_index, "size": info.size, "sha256": info.sha256, "key": key}


async def list_for_run(actor: Actor, run_id: int) -> list[Artifact]:
    """The run's artifacts, step then path order (NotFound if the run is not the actor's)."""
    actor.require(Action.READ)
    run = await actor.get(Run, run_id, what="run")
    return await Artifact.filter(run_id=run.id).order_by("step_index", "path")


async def find(actor: Actor, run_id: int, path: str, step_index: int | None = None) -> Artifact:
    """One artifact of a run; without ``step_index`` the latest step that wrote ``path``."""
    actor.require(Action.READ)
    run = await actor.get(Run, run_id, what="run")
    q = Artifact.filter(run_id=run.id, path=check_path(path))
    if step_index is not None:
        q = q.filter(step_index=step_index)
    art = await q.order_by("-step_index").first()
    if art is None:
        raise NotFound("artifact not found")
    return art


@dataclass(frozen=True, slots=True)
class Download:
    artifact: Artifact
    chunks: AsyncIterator[bytes]


async def open_download(
    actor: Actor, store: ObjectStore, run_id: int, path: str, step_index: int | None = None
) -> Download:
    """Authorize and open a stream of the artifact's bytes (NotFound if the object is gone)."""
    art = await find(actor, run_id, path, step_index)
    chunks = store.get(art.object_key)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = b""
    except ObjectNotFound:
        raise NotFound("artifact not found") from None

    async def stream() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk

    return Download(art, stream())
