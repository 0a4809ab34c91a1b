"""Basic fields are read with one attribute access; fields with resolvers keep them."""

from __future__ import annotations

import strawberry

from graph.schema import plain_attribute_resolvers, schema


@strawberry.type
class Item:
    name: str
    size: int = 3

    @strawberry.field
    def double(self) -> int:
        return self.size * 2


@strawberry.type
class Q:
    @strawberry.field
    def items(self) -> list[Item]:
        return [Item(name="a"), Item(name="b", size=5)]


def _kind(type_name: str, field: str) -> str:
    return schema._schema.type_map[type_name].fields[field].resolve.__qualname__


def test_basic_fields_use_a_plain_read_and_resolvers_are_kept() -> None:
    assert _kind("Run", "statusCode").startswith("_attribute.")
    assert _kind("Run", "job").startswith("_attribute.")
    assert not _kind("RunConnection", "totalCount").startswith("_attribute.")
    assert not _kind("Query", "runs").startswith("_attribute.")


async def test_results_are_the_same_as_strawberrys_own() -> None:
    """A throwaway schema, executed before and after the swap, answers identically."""

    s = strawberry.Schema(query=Q)
    query = "{ items { name size double } }"
    before = await s.execute(query)
    assert plain_attribute_resolvers(s) == 2  # name and size; double has a resolver
    after = await s.execute(query)
    assert before.errors is None and after.errors is None
    assert after.data == before.data == {
        "items": [{"name": "a", "size": 3, "double": 6}, {"name": "b", "size": 5, "double": 10}]
    }
