"""Reading what clients send: query parameters, path ids and JSON bodies.

Clients of dbt Cloud's API send lists in every form their HTTP library
produces: ``?include_related=a&include_related=b``, ``a,b``,
``["a","b"]`` (JSON) and ``['a', 'b']`` (a Python list printed into the
URL); all are accepted. Anything malformed is a 400 naming the parameter.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from aiohttp import web

from server.gateway.rest.envelope import RestError, bad_request
from server.services.errors import NotFound

MAX_ID = 2**63 - 1
MAX_BODY = 1024 * 1024


def path_id(request: web.Request, name: str, what: str) -> int:
    """An integer id from the path; anything else is simply not found."""
    raw = request.match_info.get(name, "")
    if not raw.isdigit() or len(raw) > 18 or int(raw) == 0:
        raise NotFound(f"{what} not found")
    return int(raw)


def _as_int(raw: str, name: str, low: int, high: int) -> int:
    raw = raw.strip()
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"must be an integer, got {raw[:50]!r}", name) from None
    if not low <= value <= high:
        raise bad_request(f"must be between {low} and {high}", name)
    return value


def query_int(
    request: web.Request, name: str, *, default: int | None = None, low: int = 1,
    high: int = MAX_ID,
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw.strip() == "" or raw.strip().lower() in ("null", "none"):
        return default
    return _as_int(raw, name, low, high)


def page_params(request: web.Request, max_limit: int = 100) -> tuple[int, int]:
    """``limit`` (default and maximum ``max_limit``) and ``offset`` (default 0)."""
    limit = query_int(request, "limit", default=max_limit, low=1, high=max_limit)
    offset = query_int(request, "offset", default=0, low=0, high=2**31 - 1)
    assert limit is not None and offset is not None
    return limit, offset


def query_list(request: web.Request, name: str) -> list[str]:
    """Every value of a list parameter, whatever form it was sent in."""
    out: list[str] = []
    for raw in request.query.getall(name, []):
        text = raw.strip()
        if not text:
            continue
        if text[0] in "[(":
            items: Any
            try:
                items = json.loads(text)
            except ValueError:
                try:
                    items = ast.literal_eval(text)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    raise bad_request("is not a list", name) from None
            if not isinstance(items, list | tuple):
                raise bad_request("is not a list", name)
            out += [str(i).strip() for i in items]
        else:
            out += [p.strip().strip("'\"") for p in text.split(",")]
    return [v for v in out if v]


def query_ints(request: web.Request, name: str, allowed: set[int] | None = None) -> list[int]:
    values = []
    for v in query_list(request, name):
        n = _as_int(v, name, 0, MAX_ID)
        if allowed is not None and n not in allowed:
            raise bad_request(f"{n} is not one of {sorted(allowed)}", name)
        values.append(n)
    return values


def query_str(request: web.Request, name: str, default: str) -> str:
    raw = request.query.get(name)
    return raw.strip() if raw is not None and raw.strip() else default


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body counts as ``{}``)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise RestError(413, f"request body larger than {MAX_BODY} bytes")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise RestError(413, f"request body larger than {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("the request body is not valid JSON", "body") from None
    if not isinstance(doc, dict):
        raise bad_request("the request body must be a JSON object", "body")
    return doc


def body_str(
    doc: dict[str, Any], name: str, *, prefix: str = "", max_length: int = 10_000
) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request("must be a string", prefix + name)
    if len(value) > max_length:
        raise bad_request(f"is longer than {max_length} characters", prefix + name)
    return value


def body_int(
    doc: dict[str, Any], name: str, *, prefix: str = "", low: int = 0, high: int = MAX_ID
) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request("must be an integer", prefix + name)
    if not low <= value <= high:
        raise bad_request(f"must be between {low} and {high}", prefix + name)
    return value


def body_bool(doc: dict[str, Any], name: str, *, prefix: str = "") -> bool | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise bad_request("must be true or false", prefix + name)
    return value


def body_str_list(doc: dict[str, Any], name: str, *, prefix: str = "") -> list[str] | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request("must be a list of strings", prefix + name)
    return value


def body_object(doc: dict[str, Any], name: str, *, prefix: str = "") -> dict[str, Any] | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request("must be an object", prefix + name)
    return value
