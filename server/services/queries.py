"""Scoped reads for the API: objects by id, children by parent, filtered pages.

These are the hot read paths (every GraphQL list and every dataloader batch),
so they are plain SQL over the asyncpg pool rather than tortoise: one
statement per call, records straight from the driver. Every statement filters
by the actor's account; some kinds add a per-role visibility rule on top
(:func:`_visibility`). An id of another account is simply not found.

Pages use keyset pagination on a total order, so walking pages while rows are
inserted never skips or repeats one: runs newest first on
``(created_at, id)``, everything else oldest first on ``id``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

import asyncpg

from server.services.actor import Actor
from server.services.errors import ValidationFailed
from server.services.permissions import Action, allowed

MAX_PAGE = 500
DEFAULT_PAGE = 50


def _cols(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


@dataclass(frozen=True, slots=True)
class Kind:
    table: str
    columns: tuple[str, ...]  # every column a caller may ask for
    soft_delete: bool = False
    filters: frozenset[str] = frozenset()
    scope: str = "account_id"  # the column that holds the account
    newest_first: bool = False  # runs: (created_at, id) descending; others: id ascending
    parents: frozenset[str] = frozenset()  # columns it can be listed by (dataloaders)
    expressions: tuple[tuple[str, str], ...] = ()  # column → SQL that computes it


_TIMES = "created_at, updated_at"
KINDS: dict[str, Kind] = {
    "account": Kind("account", _cols(f"id, name, run_slots, {_TIMES}"), scope="id"),
    "membership": Kind(
        "membership",
        _cols(f"id, account_id, user_id, role, {_TIMES}"),
        filters=frozenset({"user_id"}),
    ),
    "token": Kind(
        "api_token",
        _cols(
            "id, account_id, user_id, name, kind, role, prefix, created_at, last_used_at,"
            " expires_at, revoked_at"
        ),
        filters=frozenset({"user_id", "kind"}),
    ),
    "project": Kind(
        "project",
        _cols(
            "id, account_id, name, description, repository_url, bundled_path, subdirectory,"
            f" default_branch, deleted_at, {_TIMES}"
        ),
        soft_delete=True,
        filters=frozenset({"name"}),
    ),
    "connection": Kind(
        "warehouse_connection",
        _cols(f"id, account_id, name, adapter_type, details, {_TIMES}"),
        filters=frozenset({"name", "adapter_type"}),
    ),
    "credentials": Kind(
        "credentials",
        _cols(
            "id, account_id, project_id, user_id, name, adapter_type, fields_json, secrets,"
            f" {_TIMES}"
        ),
        filters=frozenset({"project_id", "user_id"}),
        parents=frozenset({"project_id"}),
    ),
    "environment": Kind(
        "environment",
        _cols(
            "id, account_id, project_id, name, kind, deployment_type, dbt_version,"
            " connection_id, credentials_id, target_name, threads, custom_branch, deleted_at,"
            f" {_TIMES}"
        ),
        soft_delete=True,
        filters=frozenset({"project_id", "name", "kind"}),
        parents=frozenset({"project_id"}),
    ),
    "env_var": Kind(
        "env_var",
        _cols(
            f"id, account_id, project_id, environment_id, job_id, name, is_secret, value, {_TIMES}"
        ),
        filters=frozenset({"project_id", "environment_id", "job_id"}),
        parents=frozenset({"project_id"}),
        # a secret's value is never selected, so it cannot leak through any read path
        expressions=(("value", "CASE WHEN is_secret THEN NULL ELSE value END AS value"),),
    ),
    "job": Kind(
        "job",
        _cols(
            "id, account_id, project_id, environment_id, name, description, steps,"
            " generate_docs, run_freshness, timeout_seconds, threads, target_name, cron,"
            f" timezone, next_tick_at, trigger_job_id, trigger_statuses, deleted_at, {_TIMES}"
        ),
        soft_delete=True,
        filters=frozenset({"project_id", "environment_id", "name"}),
        parents=frozenset({"project_id", "environment_id"}),
    ),
    "run": Kind(
        "run",
        _cols(
            "id, account_id, project_id, environment_id, job_id, status, status_message,"
            " trigger_kind, cause, triggered_by_user_id, previous_run_id, git_branch, git_sha,"
            " overrides, timeout_seconds, scheduled_for, attempt, created_at, updated_at,"
            " dequeued_at, started_at, finished_at, cancel_requested_at, artifacts_saved"
        ),
        filters=frozenset(
            {"project_id", "environment_id", "job_id", "status", "created_after", "created_before"}
        ),
        newest_first=True,
    ),
    "run_step": Kind(
        "run_step",
        _cols(
            "id, account_id, run_id, index, name, kind, command, status, status_message,"
            " started_at, finished_at"
        ),
        parents=frozenset({"run_id"}),
    ),
    "artifact": Kind(
        "artifact",
        _cols("id, account_id, run_id, step_index, path, size, sha256, created_at"),
        parents=frozenset({"run_id"}),
    ),
    "ide_session": Kind(
        "ide_session",
        _cols(
            "id, account_id, user_id, project_id, state, failure_reason, last_activity_at,"
            f" started_at, stopped_at, {_TIMES}"
        ),
        filters=frozenset({"user_id", "project_id"}),
    ),
}
USER_COLUMNS = _cols("id, email, name, is_active, created_at")


@lru_cache(maxsize=512)
def select_list(kind: str, columns: tuple[str, ...] | None = None, alias: str = "") -> str:
    """The SELECT list for ``columns`` of ``kind`` (all of them if None); refuses others."""
    spec = KINDS[kind]
    names = spec.columns if columns is None else columns
    unknown = set(names) - set(spec.columns)
    if unknown:
        raise ValueError(f"{kind} has no columns {sorted(unknown)}")
    exprs = dict(spec.expressions)
    prefix = f"{alias}." if alias else ""
    return ", ".join(exprs.get(c, f"{prefix}{c}") for c in names)


# children are listed in a natural order within their parent
_CHILD_ORDER = {"run_step": "index", "artifact": "step_index, path", "env_var": "name, id"}


class _Args:
    """Positional SQL parameters: ``add(v)`` returns its ``$n`` placeholder."""

    __slots__ = ("values",)

    def __init__(self, *values: Any) -> None:
        self.values: list[Any] = list(values)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _visibility(actor: Actor, kind: str, args: _Args) -> str | None:
    """Rows of ``kind`` this actor may see beyond the account rule (None: all of them)."""
    if kind == "token" and not allowed(actor.role, Action.MANAGE_TOKENS):
        return f"user_id = {args.add(actor.user_id)}" if actor.user_id else "false"
    if kind == "credentials" and not allowed(actor.role, Action.MANAGE_CREDENTIALS):
        # development credentials belong to their user
        own = f" OR user_id = {args.add(actor.user_id)}" if actor.user_id else ""
        return f"(user_id IS NULL{own})"
    if kind == "ide_session" and not allowed(actor.role, Action.MANAGE_MEMBERS):
        return f"user_id = {args.add(actor.user_id)}" if actor.user_id else "false"
    return None


def _where(actor: Actor, kind: str, spec: Kind, args: _Args, live_only: bool) -> list[str]:
    actor.require(Action.READ)
    conds = [f"{spec.scope} = {args.add(actor.account_id)}"]
    extra = _visibility(actor, kind, args)
    if extra:
        conds.append(extra)
    if live_only and spec.soft_delete:
        conds.append("deleted_at IS NULL")
    return conds


class Connections(Protocol):
    """Where statements run: the Database's pool, or one connection a caller holds."""

    def acquire(self) -> AbstractAsyncContextManager[asyncpg.Connection]: ...


async def _fetch(
    db: Connections, sql: str, args: _Args, record_class: type | None
) -> list[asyncpg.Record]:
    async with db.acquire() as conn:
        return await conn.fetch(sql, *args.values, record_class=record_class)


async def by_ids(
    actor: Actor,
    db: Connections,
    kind: str,
    ids: Iterable[int],
    *,
    live_only: bool = False,
    columns: tuple[str, ...] | None = None,
    record_class: type | None = None,
) -> list[asyncpg.Record]:
    """Rows of ``kind`` with these ids that the actor may see (deleted ones too unless
    ``live_only``: a run still shows the job it ran after the job was deleted)."""
    spec = KINDS[kind]
    args = _Args()
    conds = _where(actor, kind, spec, args, live_only)
    conds.append(f"id = ANY({args.add(list(ids))}::bigint[])")
    sql = f"SELECT {select_list(kind, columns)} FROM {spec.table} WHERE {' AND '.join(conds)}"
    return await _fetch(db, sql, args, record_class)


async def by_parent(
    actor: Actor,
    db: Connections,
    kind: str,
    column: str,
    parent_ids: Iterable[int],
    *,
    columns: tuple[str, ...] | None = None,
    record_class: type | None = None,
) -> list[asyncpg.Record]:
    """Live rows of ``kind`` whose ``column`` is one of ``parent_ids``, parent by parent."""
    spec = KINDS[kind]
    if column not in spec.parents:
        raise ValueError(f"{kind} cannot be listed by {column}")
    if columns is not None and column not in columns:
        columns = (*columns, column)
    args = _Args()
    conds = _where(actor, kind, spec, args, True)
    conds.append(f"{column} = ANY({args.add(list(parent_ids))}::bigint[])")
    order = _CHILD_ORDER.get(kind, "id")
    sql = (
        f"SELECT {select_list(kind, columns)} FROM {spec.table} WHERE {' AND '.join(conds)}"
        f" ORDER BY {column}, {order}"
    )
    return await _fetch(db, sql, args, record_class)


async def users_by_ids(
    actor: Actor, db: Connections, ids: Iterable[int], *, record_class: type | None = None
) -> list[asyncpg.Record]:
    """Users that are members of the actor's account (others are not visible)."""
    actor.require(Action.READ)
    cols = ", ".join(f"u.{c}" for c in USER_COLUMNS)
    sql = (
        f"SELECT {cols} FROM kiln_user u WHERE u.id = ANY($2::bigint[]) AND EXISTS"
        " (SELECT 1 FROM membership m WHERE m.user_id = u.id AND m.account_id = $1)"
    )
    return await _fetch(db, sql, _Args(actor.account_id, list(ids)), record_class)


# ------------------------------------------------------------------ pages


@dataclass(frozen=True, slots=True)
class Page:
    records: list[asyncpg.Record]
    has_next: bool
    kind: str

    def cursor(self, record: asyncpg.Record) -> str:
        return encode_cursor(self.kind, record)


def check_first(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE
    if not 0 <= first <= MAX_PAGE:
        raise ValidationFailed(f"first must be between 0 and {MAX_PAGE}", field="first")
    return first


def encode_cursor(kind: str, record: Mapping[str, Any]) -> str:
    if KINDS[kind].newest_first:
        created: datetime = record["created_at"]
        micros = int(created.timestamp() * 1_000_000)
        raw = f"t:{micros}:{record['id']}"
    else:
        raw = f"i:{record['id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> tuple[Any, ...]:
    """The keyset position in ``cursor``; ValidationFailed if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, *parts = raw.split(":")
        if KINDS[kind].newest_first and tag == "t" and len(parts) == 2:
            micros, pk = int(parts[0]), int(parts[1])
            return datetime.fromtimestamp(micros / 1_000_000, UTC), pk
        if not KINDS[kind].newest_first and tag == "i" and len(parts) == 1:
            return (int(parts[0]),)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError):
        pass
    raise ValidationFailed("invalid cursor", field="after")


def _filter_conds(kind: str, spec: Kind, filters: Mapping[str, Any], args: _Args) -> list[str]:
    conds: list[str] = []
    for key, value in filters.items():
        if value is None:
            continue
        if key not in spec.filters:
            raise ValueError(f"{kind} cannot be filtered by {key}")
        if key == "status":
            conds.append(f"status = ANY({args.add([int(s) for s in value])}::smallint[])")
        elif key == "created_after":
            conds.append(f"created_at >= {args.add(value)}")
        elif key == "created_before":
            conds.append(f"created_at < {args.add(value)}")
        else:
            conds.append(f"{key} = {args.add(value)}")
    return conds


async def page(
    actor: Actor,
    db: Connections,
    kind: str,
    *,
    filters: Mapping[str, Any] | None = None,
    first: int | None = None,
    after: str | None = None,
    columns: tuple[str, ...] | None = None,
    record_class: type | None = None,
) -> Page:
    """One page of live rows, in the kind's order, after the ``after`` cursor."""
    spec = KINDS[kind]
    limit = check_first(first)
    position = decode_cursor(kind, after) if after is not None else None
    args = _Args()
    conds = _where(actor, kind, spec, args, True)
    conds += _filter_conds(kind, spec, filters or {}, args)
    if spec.newest_first:
        if columns is not None and "created_at" not in columns:
            columns = (*columns, "created_at")  # the cursor needs it
        if position is not None:
            t, pk = args.add(position[0]), args.add(position[1])
            # the plain bound lets PostgreSQL use (…, created_at) indexes for the range
            conds.append(f"created_at <= {t} AND (created_at, id) < ({t}, {pk})")
        order = "created_at DESC, id DESC"
    else:
        if position is not None:
            conds.append(f"id > {args.add(position[0])}")
        order = "id"
    if limit == 0:
        return Page([], False, kind)
    sql = (
        f"SELECT {select_list(kind, columns)} FROM {spec.table} WHERE {' AND '.join(conds)}"
        f" ORDER BY {order} LIMIT {args.add(limit + 1)}"
    )
    records = await _fetch(db, sql, args, record_class)
    return Page(records[:limit], len(records) > limit, kind)


async def count(
    actor: Actor, db: Connections, kind: str, *, filters: Mapping[str, Any] | None = None
) -> int:
    """How many live rows the same filters match (for ``totalCount``, asked for separately)."""
    spec = KINDS[kind]
    args = _Args()
    conds = _where(actor, kind, spec, args, True)
    conds += _filter_conds(kind, spec, filters or {}, args)
    sql = f"SELECT count(*) FROM {spec.table} WHERE {' AND '.join(conds)}"
    async with db.acquire() as conn:
        return int(await conn.fetchval(sql, *args.values))


async def latest_runs(
    actor: Actor,
    db: Connections,
    job_ids: Iterable[int],
    *,
    columns: tuple[str, ...] | None = None,
    record_class: type | None = None,
) -> list[asyncpg.Record]:
    """The newest run of each job (one index probe per job)."""
    spec = KINDS["run"]
    if columns is not None and "job_id" not in columns:
        columns = (*columns, "job_id")
    args = _Args()
    conds = _where(actor, "run", spec, args, True)
    jobs = args.add(list(job_ids))
    sql = (
        f"SELECT {select_list('run', columns, 'r')} FROM unnest({jobs}::bigint[]) AS j(id)"
        f" CROSS JOIN LATERAL (SELECT * FROM run WHERE {' AND '.join(conds)} AND job_id = j.id"
        " ORDER BY created_at DESC, id DESC LIMIT 1) AS r"
    )
    return await _fetch(db, sql, args, record_class)


async def accounts_of(
    db: Connections, account_ids: Iterable[int], *, record_class: type | None = None
) -> list[asyncpg.Record]:
    """Accounts by id, for a principal's own list of memberships (the caller checked them)."""
    sql = f"SELECT {select_list('account')} FROM account WHERE id = ANY($1::bigint[]) ORDER BY name"
    return await _fetch(db, sql, _Args(list(account_ids)), record_class)


async def user_self(
    db: Connections, user_id: int, *, record_class: type | None = None
) -> asyncpg.Record | None:
    """The caller's own user row (needs no account)."""
    sql = f"SELECT {', '.join(USER_COLUMNS)} FROM kiln_user WHERE id = $1"
    rows = await _fetch(db, sql, _Args(user_id), record_class)
    return rows[0] if rows else None


async def own_token(
    db: Connections, token_id: int, *, record_class: type | None = None
) -> asyncpg.Record | None:
    """The caller's own token (whatever the role may list)."""
    sql = f"SELECT {select_list('token')} FROM api_token WHERE id = $1"
    rows = await _fetch(db, sql, _Args(token_id), record_class)
    return rows[0] if rows else None


async def visible(actor: Actor, db: Connections, kind: str, pk: int) -> bool:
    """Whether the actor may read the live object ``pk`` of ``kind`` (the rules of every
    read above: READ, the account, not deleted, per-role visibility)."""
    spec = KINDS[kind]
    args = _Args()
    conds = _where(actor, kind, spec, args, True)
    conds.append(f"id = {args.add(pk)}")
    sql = f"SELECT 1 FROM {spec.table} WHERE {' AND '.join(conds)}"
    async with db.acquire() as conn:
        return await conn.fetchval(sql, *args.values) is not None
