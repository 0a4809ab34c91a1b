"""The object store contract.

Kiln keeps run artifacts and archived logs as opaque objects addressed by
keys such as ``artifacts/<account>/<run>/<step>/<path>`` and
``logs/<account>/<run>.jsonl.gz``. Implementations: the filesystem (embedded
default) and S3 or anything that speaks its API.

Contract every implementation keeps:

* Keys are ``/``-separated relative paths of printable characters; an empty
  segment, ``.``/``..`` segment or a leading ``/`` is rejected with
  :class:`InvalidKey` before any I/O.
* ``put`` is atomic: a reader sees the old object, or none, or the whole new
  one; never a partial write. It returns the stored size and sha256.
* ``get`` streams; it raises :class:`ObjectNotFound` before yielding if the key
  does not exist.
* ``list`` yields every object under a prefix in key order (no directories).
* ``delete`` is idempotent: deleting a missing key is not an error.
"""

from __future__ import annotations

import abc
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

CHUNK_SIZE = 256 * 1024


class ObjectStoreError(Exception):
    """Base class of object store failures."""


class ObjectNotFound(ObjectStoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"object not found: {key}")
        self.key = key


class InvalidKey(ObjectStoreError, ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str | None = None


_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise InvalidKey."""
    if not key or key.startswith("/") or _BAD_CHARS.search(key):
        raise InvalidKey(f"invalid object key: {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey(f"invalid object key: {key!r}")
    return key


class ObjectStore(abc.ABC):
    """Where artifacts and archived logs live. See the module docstring."""

    @abc.abstractmethod
    async def put(self, key: str, data: bytes | AsyncIterable[bytes]) -> ObjectInfo:
        """Store ``data`` (bytes or an async stream of chunks) under ``key``."""

    @abc.abstractmethod
    def get(self, key: str) -> AsyncIterator[bytes]:
        """Stream the object's bytes; raise ObjectNotFound if it is missing."""

    @abc.abstractmethod
    async def head(self, key: str) -> ObjectInfo | None:
        """Size of the object, or None when it does not exist."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, in key order."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""

    async def read(self, key: str) -> bytes:
        """The whole object in memory (for small objects only)."""
        return b"".join([chunk async for chunk in self.get(key)])

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the store is unusable afterwards."""
