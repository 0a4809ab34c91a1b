"""One contract, two implementations: the same test body runs on the filesystem and on S3 (moto)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.config import S3Settings
from server.objectstore import InvalidKey, ObjectNotFound, ObjectStore
from server.objectstore.fs import FilesystemObjectStore
from server.objectstore.s3 import S3ObjectStore


@pytest.fixture(params=["filesystem", "s3"])
async def store(request, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "filesystem":
        s: ObjectStore = FilesystemObjectStore(tmp_path / "objects")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        s = S3ObjectStore(
            S3Settings(
                bucket=f"kiln-{os.urandom(4).hex()}",
                prefix="tenant-a",
                endpoint_url=endpoint,
                region="eu-west-1",
                access_key_id="test",
                secret_access_key="test",
            )
        )
        await s.ensure_bucket()
    yield s
    await s.close()


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_put_get_head_list_delete(store: ObjectStore) -> None:
    info = await store.put("artifacts/1/2/1/manifest.json", b'{"a": 1}')
    assert info.size == 8
    assert info.sha256 == hashlib.sha256(b'{"a": 1}').hexdigest()
    assert await store.read("artifacts/1/2/1/manifest.json") == b'{"a": 1}'
    head = await store.head("artifacts/1/2/1/manifest.json")
    assert head is not None and head.size == 8
    assert await store.head("artifacts/1/2/1/missing.json") is None

    await store.put("artifacts/1/2/1/run_results.json", b"x" * 10)
    await store.put("artifacts/1/3/1/manifest.json", b"y")
    await store.put("logs/1/2.jsonl.gz", b"z")
    keys = [o.key async for o in store.list("artifacts/1/2/")]
    assert keys == ["artifacts/1/2/1/manifest.json", "artifacts/1/2/1/run_results.json"]
    assert len([o async for o in store.list("")]) == 4

    await store.delete("artifacts/1/2/1/manifest.json")
    await store.delete("artifacts/1/2/1/manifest.json")  # idempotent
    assert await store.head("artifacts/1/2/1/manifest.json") is None
    with pytest.raises(ObjectNotFound):
        await store.read("artifacts/1/2/1/manifest.json")


async def test_streamed_put_and_get_of_a_large_object(store: ObjectStore) -> None:
    data = os.urandom(9 * 1024 * 1024 + 123)  # crosses the multipart threshold
    info = await store.put("artifacts/9/9/1/big.bin", _chunks(data, 1024 * 1024))
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    got = bytearray()
    async for chunk in store.get("artifacts/9/9/1/big.bin"):
        got += chunk
    assert bytes(got) == data
    # overwrite replaces the whole object
    await store.put("artifacts/9/9/1/big.bin", b"small")
    assert await store.read("artifacts/9/9/1/big.bin") == b"small"


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a/\x00b", "a\\b"])
async def test_unsafe_keys_are_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        await store.put(key, b"x")
    with pytest.raises(InvalidKey):
        await store.head(key)
