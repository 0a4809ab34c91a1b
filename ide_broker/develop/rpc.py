"""JSON-RPC 2.0 dispatch for the develop server (transport-agnostic).

One text frame holds one request, one notification or a batch array. The
dispatcher validates the envelope, looks the method up and validates params
through ``Params`` (params are always an object; unknown names are refused so
client bugs surface as -32602 with the name of the param). Handlers raise
``RpcError`` for anything the client should see; any other exception becomes
-32603 with a short message (never a traceback). Concurrency is the caller's
business: the websocket layer runs each frame as its own task.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
    invalid_params,
)

log = logging.getLogger(__name__)

_MISSING = object()


class Peer(Protocol):
    """The connection a request came from (used to stream notifications back)."""

    async def notify(self, method: str, params: dict[str, Any]) -> None: ...


Handler = Callable[["Params", Peer], Awaitable[Any]]


class Method:
    """A handler plus the names of the params it accepts."""

    def __init__(self, handler: Handler, params: set[str] | frozenset[str] = frozenset()) -> None:
        self.handler = handler
        self.params = frozenset(params)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class Params:
    """Typed access to a params object; refuses names outside ``allowed``."""

    def __init__(self, raw: dict[str, Any], allowed: frozenset[str]) -> None:
        unknown = sorted(set(raw) - allowed)
        if unknown:
            expected = ", ".join(sorted(allowed)) or "none"
            raise invalid_params(f"unknown param {unknown[0]!r} (expected: {expected})")
        self.raw = raw

    def has(self, name: str) -> bool:
        return name in self.raw

    def _get(self, name: str, required: bool) -> Any:
        value = self.raw.get(name, _MISSING)
        if value is _MISSING and required:
            raise invalid_params(f"param {name!r} is required")
        return value

    def string(self, name: str, *, allow_empty: bool = False, max_len: int | None = None) -> str:
        value = self._get(name, True)
        if not isinstance(value, str):
            raise invalid_params(f"param {name!r} must be a string, got {_type_name(value)}")
        if not allow_empty and value == "":
            raise invalid_params(f"param {name!r} must not be empty")
        if max_len is not None and len(value) > max_len:
            raise invalid_params(f"param {name!r} is longer than {max_len} characters")
        return value

    def opt_string(self, name: str, *, allow_empty: bool = False) -> str | None:
        """A string, or None when the param is absent or null."""
        if self.raw.get(name) is None:
            return None
        return self.string(name, allow_empty=allow_empty)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise invalid_params(f"param {name!r} must be a boolean, got {_type_name(value)}")
        return value

    def integer(self, name: str, default: int, *, lo: int, hi: int) -> int:
        value = self.raw.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_params(f"param {name!r} must be an integer, got {_type_name(value)}")
        if not lo <= value <= hi:
            raise invalid_params(f"param {name!r} must be between {lo} and {hi}, got {value}")
        return value

    def string_list(self, name: str, *, required: bool = True, max_items: int = 1000) -> list[str]:
        value = self._get(name, required)
        if value is _MISSING or value is None:
            if required:
                raise invalid_params(f"param {name!r} must be an array of strings, got null")
            return []
        if not isinstance(value, list):
            got = _type_name(value)
            raise invalid_params(f"param {name!r} must be an array of strings, got {got}")
        if len(value) > max_items:
            raise invalid_params(f"param {name!r} has more than {max_items} items")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                got = _type_name(item)
                raise invalid_params(f"param {name!r}[{i}] must be a string, got {got}")
        return list(value)


class Dispatcher:
    """Turns one incoming text frame into the response text (or None)."""

    def __init__(self, methods: dict[str, Method]) -> None:
        self.methods = methods

    async def handle_text(self, text: str, peer: Peer) -> str | None:
        try:
            message = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return _dumps(_error(None, RpcError(PARSE_ERROR, f"Parse error: {exc}")))
        if isinstance(message, list):
            if not message:
                err = RpcError(INVALID_REQUEST, "Invalid Request: empty batch")
                return _dumps(_error(None, err))
            replies = await asyncio.gather(*(self.handle_one(item, peer) for item in message))
            answered = [r for r in replies if r is not None]
            return _dumps(answered) if answered else None
        reply = await self.handle_one(message, peer)
        return _dumps(reply) if reply is not None else None

    async def handle_one(self, message: Any, peer: Peer) -> dict[str, Any] | None:
        if not isinstance(message, dict):
            return _error(None, RpcError(INVALID_REQUEST, "Invalid Request: expected an object"))
        req_id = message.get("id")
        is_notification = "id" not in message
        if not _valid_id(req_id):
            return _error(None, RpcError(INVALID_REQUEST, "Invalid Request: bad id"))
        method = message.get("method")
        if message.get("jsonrpc") != "2.0":
            return _error(req_id, _invalid_request('jsonrpc must be "2.0"'))
        if not isinstance(method, str):
            return _error(req_id, _invalid_request("method must be a string"))
        entry = self.methods.get(method)
        try:
            if entry is None:
                raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
            raw = message.get("params", {})
            if raw is None:
                raw = {}
            if not isinstance(raw, dict):
                raise invalid_params("params must be an object")
            result = await entry.handler(Params(raw, entry.params), peer)
        except RpcError as exc:
            return None if is_notification else _error(req_id, exc)
        except Exception as exc:
            log.exception("method %s failed", method)
            err = RpcError(INTERNAL_ERROR, f"Internal error: {type(exc).__name__}: {exc}")
            return None if is_notification else _error(req_id, err)
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": req_id, "result": result}


def _valid_id(value: Any) -> bool:
    return value is None or isinstance(value, str) or (
        isinstance(value, int) and not isinstance(value, bool)
    )


def _invalid_request(why: str) -> RpcError:
    return RpcError(INVALID_REQUEST, f"Invalid Request: {why}")


def _error(req_id: Any, exc: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "error": exc.to_json()}


def _dumps(obj: Any) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        # A handler returned something that is not JSON: answer, do not drop.
        req_id = obj.get("id") if isinstance(obj, dict) else None
        err = RpcError(INTERNAL_ERROR, f"Internal error: result is not JSON ({exc})")
        return json.dumps(_error(req_id, err))
