"""Object storage for artifacts and archived logs; see :mod:`server.objectstore.base`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from server.config import Settings
from server.objectstore.base import (
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
)

__all__ = [
    "InvalidKey",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "open_store",
]


def open_store(settings: Settings) -> ObjectStore:
    """The store ``KILN_OBJECT_STORE`` names (filesystem by default)."""
    if settings.s3 is not None:
        from server.objectstore.s3 import S3ObjectStore

        return S3ObjectStore(settings.s3)
    from server.objectstore.fs import FilesystemObjectStore

    return FilesystemObjectStore(Path(unquote(urlsplit(settings.object_store).path)))
