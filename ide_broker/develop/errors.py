"""JSON-RPC error values of the develop server protocol.

Every failure a client can see is an ``RpcError``: the standard JSON-RPC codes
(-32700 .. -32603) for protocol problems, and application codes >= 1000 whose
``data.code`` is a stable slug a client can switch on. Messages are for humans
and never carry secrets or preview rows.
"""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Application codes (>= 1000); data.code carries the slug next to each.
IO_ERROR = 1000  # "io_error"
MANIFEST_UNAVAILABLE = 1001  # "manifest_unavailable": the project does not parse
NOT_FOUND = 1002  # "not_found"
FORBIDDEN_PATH = 1003  # "forbidden_path"
ALREADY_EXISTS = 1004  # "already_exists"
WRONG_TYPE = 1005  # "is_directory" / "not_a_directory"
NOT_TEXT = 1006  # "not_text"
TOO_LARGE = 1007  # "too_large"
PERMISSION_DENIED = 1008  # "permission_denied"
CONFLICT = 1009  # "conflict"
GIT_FAILED = 1010  # "git_failed"
GIT_TIMEOUT = 1011  # "git_timeout"
DBT_ERROR = 1020  # "dbt_error"
UNKNOWN_INVOCATION = 1021  # "unknown_invocation"
FORMAT_ERROR = 1030  # "format_error"


class RpcError(Exception):
    """An error answered to the client as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def invalid_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"Invalid params: {message}")


def app_error(code: int, slug: str, message: str, **data: Any) -> RpcError:
    """An application error (code >= 1000) with ``data.code == slug``."""
    return RpcError(code, message, {"code": slug, **data})


def forbidden_path(path: str, why: str) -> RpcError:
    return app_error(FORBIDDEN_PATH, "forbidden_path", f"Forbidden path {path!r}: {why}", path=path)
