"""Filesystem object store: the embedded default, one file per key under a root.

Writes go to a temporary file in the same directory and are renamed into
place, so readers never see a partial object.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from server.objectstore.base import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    check_key,
)


class FilesystemObjectStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, data: bytes | AsyncIterable[bytes]) -> ObjectInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".put-")
        try:
            with os.fdopen(fd, "wb") as f:
                if isinstance(data, bytes | bytearray | memoryview):
                    chunk = bytes(data)
                    f.write(chunk)
                    digest.update(chunk)
                    size = len(chunk)
                else:
                    async for chunk in data:
                        f.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ObjectInfo(key=key, size=size, sha256=digest.hexdigest())

    async def get(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            f = path.open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        with f:
            while chunk := f.read(CHUNK_SIZE):
                yield chunk
                await asyncio.sleep(0)

    async def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key=key, size=st.st_size) if path.is_file() else None

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        keys: list[tuple[str, int]] = []
        for dirpath, _dirs, files in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            for name in files:
                if name.startswith(".put-"):
                    continue
                key = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append((key, os.stat(os.path.join(dirpath, name)).st_size))
        for key, size in sorted(keys):
            yield ObjectInfo(key=key, size=size)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # prune empty parent directories up to the root
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
