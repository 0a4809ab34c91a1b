"""Input checks shared by the services; each raises ValidationFailed naming the field."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from server.services.errors import ValidationFailed

_GIT_REF = re.compile(
    r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)[^\s~^:?*\[\\\x00-\x1f\x7f]{1,200}(?<![/.])$"
)
_IDENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
# keys that carry secrets: they belong in Credentials.secrets, never in plain fields
SECRET_KEYS = frozenset(
    {
        "password",
        "pass",
        "passwd",
        "token",
        "secret",
        "client_secret",
        "private_key",
        "private_key_passphrase",
        "keyfile_json",
        "access_token",
        "refresh_token",
        "api_key",
        "oauth_client_secret",
    }
)
MAX_JSON_BYTES = 64 * 1024


def check_text(value: str | None, field: str, *, max_length: int, required: bool = False) -> str:
    value = (value or "").strip()
    if required and not value:
        raise ValidationFailed(f"{field} must not be empty", field=field)
    if len(value) > max_length:
        raise ValidationFailed(f"{field} is longer than {max_length} characters", field=field)
    if "\x00" in value:
        raise ValidationFailed(f"{field} contains a NUL character", field=field)
    return value


def check_git_ref(value: str | None, field: str) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not _GIT_REF.match(value) or value.endswith(".lock"):
        raise ValidationFailed(f"{field} is not a valid git branch name", field=field)
    return value


def check_identifier(value: str | None, field: str) -> str | None:
    """A dbt target or adapter-style name (letters, digits, ``_.-``)."""
    if value is None:
        return None
    value = value.strip()
    if not _IDENT.match(value):
        raise ValidationFailed(
            f"{field} may hold only letters, digits, '_', '.', '-' (1-100)", field=field
        )
    return value


def check_int(value: int | None, field: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if not low <= value <= high:
        raise ValidationFailed(f"{field} must be between {low} and {high}", field=field)
    return value


def check_plain_fields(value: Any, field: str) -> dict[str, Any]:
    """A JSON object of non-secret settings: scalar values, no secret-looking keys."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationFailed(f"{field} must be a JSON object", field=field)
    out: dict[str, Any] = {}
    for key, v in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= 100:
            raise ValidationFailed(f"{field}: keys must be 1-100 characters", field=field)
        if key.lower() in SECRET_KEYS:
            raise ValidationFailed(
                f"{field}.{key} is a secret: set it in the credentials' secrets instead",
                field=field,
            )
        if v is not None and not isinstance(v, str | int | float | bool | list):
            raise ValidationFailed(f"{field}.{key} must be a scalar or a list", field=field)
        out[key] = v
    if len(json.dumps(out)) > MAX_JSON_BYTES:
        raise ValidationFailed(f"{field} is larger than {MAX_JSON_BYTES} bytes", field=field)
    return out
