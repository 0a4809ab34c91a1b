"""S3 object store through aiobotocore: AWS S3, MinIO, Ceph, GCS interop, moto.

Objects up to ``MULTIPART_THRESHOLD`` are sent in one PUT; larger streams go
up in multipart chunks and are completed (or aborted) as a whole, so a
failed upload never leaves a partial object visible under the key.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import ClientError

from server.config import S3Settings
from server.objectstore.base import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    check_key,
)

MULTIPART_THRESHOLD = 8 * 1024 * 1024  # also the part size (S3's minimum is 5 MiB)


def _not_found(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return code in ("404", "NoSuchKey", "NotFound")


class S3ObjectStore(ObjectStore):
    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def _c(self) -> Any:
        if self._client is None:
            s = self.settings
            session = get_session()
            self._client = await self._stack.enter_async_context(
                session.create_client(
                    "s3",
                    region_name=s.region,
                    endpoint_url=s.endpoint_url,
                    aws_access_key_id=s.access_key_id,
                    aws_secret_access_key=s.secret_access_key,
                    config=Config(
                        retries={"max_attempts": 5, "mode": "standard"},
                        s3={"addressing_style": "path"} if s.endpoint_url else None,
                    ),
                )
            )
        return self._client

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.settings.prefix}/{key}" if self.settings.prefix else key

    def _strip(self, full: str) -> str:
        p = self.settings.prefix
        return full[len(p) + 1 :] if p else full

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (used by tests and first start)."""
        c = await self._c()
        try:
            await c.head_bucket(Bucket=self.settings.bucket)
        except ClientError:
            kwargs: dict[str, Any] = {"Bucket": self.settings.bucket}
            if self.settings.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.region}
            await c.create_bucket(**kwargs)

    async def put(self, key: str, data: bytes | AsyncIterable[bytes]) -> ObjectInfo:
        c = await self._c()
        full = self._key(key)
        bucket = self.settings.bucket
        if isinstance(data, bytes | bytearray | memoryview):
            body = bytes(data)
            await c.put_object(Bucket=bucket, Key=full, Body=body)
            return ObjectInfo(key=key, size=len(body), sha256=hashlib.sha256(body).hexdigest())

        digest = hashlib.sha256()
        size = 0
        buf = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in data:
                digest.update(chunk)
                size += len(chunk)
                buf += chunk
                if len(buf) >= MULTIPART_THRESHOLD:
                    if upload_id is None:
                        resp = await c.create_multipart_upload(Bucket=bucket, Key=full)
                        upload_id = resp["UploadId"]
                    part = bytes(buf[:MULTIPART_THRESHOLD])
                    del buf[:MULTIPART_THRESHOLD]
                    n = len(parts) + 1
                    r = await c.upload_part(
                        Bucket=bucket, Key=full, UploadId=upload_id, PartNumber=n, Body=part
                    )
                    parts.append({"PartNumber": n, "ETag": r["ETag"]})
            if upload_id is None:
                await c.put_object(Bucket=bucket, Key=full, Body=bytes(buf))
            else:
                if buf:
                    n = len(parts) + 1
                    r = await c.upload_part(
                        Bucket=bucket, Key=full, UploadId=upload_id, PartNumber=n, Body=bytes(buf)
                    )
                    parts.append({"PartNumber": n, "ETag": r["ETag"]})
                await c.complete_multipart_upload(
                    Bucket=bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            if upload_id is not None:
                try:
                    await c.abort_multipart_upload(Bucket=bucket, Key=full, UploadId=upload_id)
                except ClientError:
                    pass
            raise
        return ObjectInfo(key=key, size=size, sha256=digest.hexdigest())

    async def get(self, key: str) -> AsyncIterator[bytes]:
        c = await self._c()
        try:
            resp = await c.get_object(Bucket=self.settings.bucket, Key=self._key(key))
        except ClientError as exc:
            if _not_found(exc):
                raise ObjectNotFound(key) from None
            raise ObjectStoreError(f"s3 get {key}: {exc}") from None
        async with resp["Body"] as body:
            while chunk := await body.read(CHUNK_SIZE):
                yield chunk

    async def head(self, key: str) -> ObjectInfo | None:
        c = await self._c()
        try:
            resp = await c.head_object(Bucket=self.settings.bucket, Key=self._key(key))
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise ObjectStoreError(f"s3 head {key}: {exc}") from None
        return ObjectInfo(key=key, size=int(resp["ContentLength"]))

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        c = await self._c()
        full_prefix = f"{self.settings.prefix}/{prefix}" if self.settings.prefix else prefix
        paginator = c.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=full_prefix):
            for obj in page.get("Contents", []):
                yield ObjectInfo(key=self._strip(obj["Key"]), size=int(obj["Size"]))

    async def delete(self, key: str) -> None:
        c = await self._c()
        await c.delete_object(Bucket=self.settings.bucket, Key=self._key(key))

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None
