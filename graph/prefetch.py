"""Prefetch what a query selects, one batch per relation, before the fields resolve.

Every resolver that produces rows (lists, lookups by id, mutation payloads)
goes through here with its field's selection: it fetches the rows with the
columns the selection needs, then for every selected field that is a
:class:`graph.rows.relation` primes that relation's dataloader with the keys
of all rows at once (again with just the needed columns), and recurses into
the related rows. Afterwards every relation read during execution is a
dictionary hit: fields resolve without coroutines, and the SQL count is one
statement per relation, not per row.

Invariant: a row is only ever read for the fields of a selection it was
fetched for (a row reached again with more fields is fetched again with the
union), so a field never finds its column missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLResolveInfo,
    InlineFragmentNode,
    SelectionSetNode,
)

from graph.loaders import ROWS, pinned
from graph.rows import Row
from server.services import queries

if TYPE_CHECKING:
    from graph.loaders import Loaders
    from graph.relay import ConnectionRow

Sets = Sequence[SelectionSetNode | None]
Fields = dict[str, list[SelectionSetNode | None]]
Fragments = dict[str, FragmentDefinitionNode]
_INTERFACES = {"Node"}


def _collect(
    sets: Iterable[SelectionSetNode | None],
    fragments: Fragments,
    type_name: str | None,
    out: Fields,
) -> None:
    for sel_set in sets:
        if sel_set is None:
            continue
        for sel in sel_set.selections:
            if isinstance(sel, FieldNode):
                out.setdefault(sel.name.value, []).append(sel.selection_set)
                continue
            if isinstance(sel, InlineFragmentNode):
                cond, sub = sel.type_condition, sel.selection_set
            elif isinstance(sel, FragmentSpreadNode):
                frag = fragments.get(sel.name.value)
                if frag is None:
                    continue
                cond, sub = frag.type_condition, frag.selection_set
            else:  # pragma: no cover - no other selection kinds exist
                continue
            name = cond.name.value if cond is not None else None
            if name is None or type_name is None or name == type_name or name in _INTERFACES:
                _collect([sub], fragments, type_name, out)


def fields_of(
    sets: Iterable[SelectionSetNode | None], fragments: Fragments, type_name: str | None = None
) -> Fields:
    """Field name → the selection sets under it, merged over aliases and fragments
    (only fragments that apply to ``type_name``)."""
    out: Fields = {}
    _collect(sets, fragments, type_name, out)
    return out


def selection(info: GraphQLResolveInfo, *path: str) -> list[SelectionSetNode | None]:
    """The selection sets at ``path`` below the current field (e.g. ``edges``, ``node``)."""
    sets: list[SelectionSetNode | None] = [f.selection_set for f in info.field_nodes]
    for name in path:
        sets = fields_of(sets, info.fragments).get(name, [])
    return sets


async def prefetch(rows: Sequence[Any], sets: Sets, fragments: Fragments) -> None:
    """Prime the loaders of every relation ``sets`` selects on ``rows``, recursively."""
    by_class: dict[type, list[Any]] = {}
    for row in rows:
        if isinstance(row, Row):
            by_class.setdefault(type(row), []).append(row)
    jobs = [
        _relations(group, fields_of(sets, fragments, cls.TYPE), fragments)
        for cls, group in by_class.items()
    ]
    if len(jobs) == 1:
        await jobs[0]
    elif jobs:
        await asyncio.gather(*jobs)


async def _relations(rows: list[Row], fields: Fields, fragments: Fragments) -> None:
    rels = type(rows[0]).RELATIONS
    jobs = [
        _prime(rows, rels[name].loader, rels[name].key, subsets, fragments)
        for name, subsets in fields.items()
        if name in rels
    ]
    if len(jobs) == 1:
        await jobs[0]
    elif jobs:
        await asyncio.gather(*jobs)


async def _prime(
    rows: list[Row], loader_name: str, key: str, subsets: Sets, fragments: Fragments
) -> None:
    keys = [k for r in rows if (k := r[key]) is not None]
    if not keys:
        return
    loader = getattr(rows[0]._l, loader_name)
    cls: type[Row] = loader.row_class
    fields = fields_of(subsets, fragments, cls.TYPE)
    values = await loader.prime(keys, cls.columns_for(fields))
    related: list[Row] = []
    for v in values:
        if isinstance(v, list | tuple):
            related.extend(v)
        elif v is not None:
            related.append(v)
    if related and cls.RELATIONS:
        await _relations(related, fields, fragments)


# ------------------------------------------------------------------ entry points


async def load_one(info: GraphQLResolveInfo, loaders: Loaders, kind: str, pk: int) -> Row | None:
    """A live row by id with what the field selects below it, or None."""
    cls = ROWS[kind]
    sets = selection(info)
    fields = fields_of(sets, info.fragments, cls.TYPE)
    async with pinned(loaders.db):
        [row] = await getattr(loaders, kind).prime([pk], cls.columns_for(fields))
        if row is None or (cls.KIND in _SOFT and row["deleted_at"] is not None):
            return None
        await _relations([row], fields, info.fragments)
    return row


async def load_nodes(
    info: GraphQLResolveInfo, loaders: Loaders, ids: Sequence[tuple[str, int]]
) -> list[Row | None]:
    """Live rows for (kind, pk) pairs, in order: one batch per kind, then their relations."""
    sets = selection(info)
    by_kind: dict[str, list[int]] = {}
    for kind, pk in ids:
        by_kind.setdefault(kind, []).append(pk)
    found: dict[tuple[str, int], Row | None] = {}
    async with pinned(loaders.db):
        for kind, pks in by_kind.items():
            cls = ROWS[kind]
            cols = cls.columns_for(fields_of(sets, info.fragments, cls.TYPE))
            for pk, row in zip(pks, await getattr(loaders, kind).prime(pks, cols), strict=True):
                live = row is not None and not (kind in _SOFT and row["deleted_at"] is not None)
                found[(kind, pk)] = row if live else None
        await prefetch([r for r in found.values() if r is not None], sets, info.fragments)
    return [found[key] for key in ids]


_SOFT = {kind for kind, spec in queries.KINDS.items() if spec.soft_delete}


async def page(
    info: GraphQLResolveInfo,
    loaders: Loaders,
    kind: str,
    filters: dict[str, Any],
    first: int | None,
    after: str | None,
) -> ConnectionRow:
    """One page of ``kind`` with what the query selects below ``edges { node }``.

    One statement for the page, one per selected relation, and a COUNT only if
    ``totalCount`` is selected (it runs when that field resolves).
    """
    from graph.relay import ConnectionRow

    cls = ROWS[kind]
    fields = fields_of(selection(info, "edges", "node"), info.fragments, cls.TYPE)
    actor = loaders.actor
    async with pinned(loaders.db):
        result = await queries.page(
            actor,
            loaders.conns(),
            kind,
            filters=filters,
            first=first,
            after=after,
            columns=cls.columns_for(fields),
            record_class=cls,
        )
        rows = loaders.adopt(result.records)
        if rows:
            await _relations(rows, fields, info.fragments)

    async def count() -> int:
        return await queries.count(actor, loaders.db, kind, filters=filters)

    return ConnectionRow(
        rows,
        result.cursor,
        has_next=result.has_next,
        has_previous=after is not None,
        count=count,
    )
