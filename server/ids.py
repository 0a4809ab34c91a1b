"""Opaque global ids (Relay): base64url of ``"<Type>:<pk>"``.

They live in the core because the CLI writes them (``demo.json``) as well as
the GraphQL layer. Decoding never raises anything but :class:`InvalidId`.
"""

from __future__ import annotations

import base64
import binascii


class InvalidId(ValueError):
    pass


def to_global_id(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def from_global_id(gid: str, expected_type: str | None = None) -> tuple[str, int]:
    """(type, pk); raises InvalidId if malformed or of another type than expected."""
    if not isinstance(gid, str) or not 0 < len(gid) <= 200:
        raise InvalidId("malformed id")
    try:
        raw = base64.urlsafe_b64decode(gid + "=" * (-len(gid) % 4)).decode()
        type_name, _, pk_s = raw.partition(":")
        pk = int(pk_s)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidId(f"malformed id: {gid!r}") from None
    if not type_name or pk <= 0 or pk >= 2**63:
        raise InvalidId(f"malformed id: {gid!r}")
    if expected_type is not None and type_name != expected_type:
        raise InvalidId(f"id {gid!r} is not a {expected_type} id")
    return type_name, pk
