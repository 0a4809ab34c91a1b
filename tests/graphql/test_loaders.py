"""The dataloader's rules: batching, no coroutine once loaded, columns only ever grow."""

from __future__ import annotations

import asyncio

from graph.loaders import Loader
from graph.types.account import AccountRow


async def test_batches_and_answers_synchronously_once_loaded() -> None:
    calls: list[tuple[list[int], object]] = []

    async def fetch(keys: list[int], columns: object) -> dict[int, str]:
        calls.append((sorted(keys), columns))
        return {k: f"v{k}" for k in keys if k != 3}

    loader: Loader[int, str] = Loader(fetch, AccountRow)
    futures = [loader.load(k) for k in (1, 2, 3, 1)]
    assert all(isinstance(f, asyncio.Future) for f in futures)
    assert await asyncio.gather(*futures) == ["v1", "v2", None, "v1"]
    assert calls == [([1, 2, 3], None)]
    assert loader.load(2) == "v2"  # the value itself: no coroutine, no query
    assert len(calls) == 1


async def test_concurrent_primes_never_shrink_columns() -> None:
    gate = asyncio.Event()
    fetched: list[tuple[str, ...] | None] = []

    async def fetch(keys: list[int], columns: tuple[str, ...] | None) -> dict[int, tuple]:
        fetched.append(columns)
        if columns == ("id", "name"):
            await gate.wait()  # the narrow fetch finishes last
        return {k: columns for k in keys}

    loader: Loader[int, tuple] = Loader(fetch, AccountRow)
    narrow = asyncio.ensure_future(loader.prime([1], ("id", "name")))
    await asyncio.sleep(0)
    wide = asyncio.ensure_future(loader.prime([1], ("id", "name", "created_at")))
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(narrow, wide)
    assert set(loader.load(1)) == {"id", "name", "created_at"}
    assert len(fetched) == 2
    [value] = await loader.prime([1], ("id",))  # covered by what is cached: no query
    assert set(value) == {"id", "name", "created_at"} and len(fetched) == 2
