"""dbt Cloud's response envelope, and every error of the REST API in it.

Success: ``{"status": {"code", "is_success", "user_message",
"developer_message"}, "data": ...}`` plus ``extra`` on lists. Errors use the
same envelope with the HTTP status as ``code``; a 400 names the bad field in
``user_message`` and in ``data`` (``{"<field>": ["<message>"]}``).

:func:`rest_middleware` applies to ``/api/v2`` and ``/api/v3`` only: it turns
domain errors, aiohttp's own 404/405, and anything unexpected into
enveloped answers, so a client never sees an HTML error page or a bare 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from server.services.errors import Conflict, DomainError, Forbidden, NotFound, Unauthenticated

log = logging.getLogger("kiln.rest")
PREFIXES = ("/api/v2/", "/api/v3/")
_MESSAGES = {
    200: "Success!",
    201: "Success!",
    400: "The request was invalid.",
    401: "Invalid token.",
    403: "You do not have permission to do this.",
    404: "The requested resource was not found.",
    405: "Method not allowed.",
    409: "The request conflicts with the current state.",
    413: "The request body is too large.",
    429: "Too many requests.",
    500: "Internal server error.",
}


class RestError(Exception):
    """An error the REST layer itself detects (bad query parameter, bad body)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers


def bad_request(message: str, field: str | None = None) -> RestError:
    return RestError(400, f"{field}: {message}" if field and field not in message else message,
                     field=field)


def _body(status: int, data: Any, message: str | None, extra: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": {
            "code": status,
            "is_success": 200 <= status < 300,
            "user_message": message or _MESSAGES.get(status, ""),
            "developer_message": "" if 200 <= status < 300 else (message or ""),
        },
        "data": data,
    }
    if extra is not None:
        body["extra"] = extra
    return body


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def ok(data: Any, *, extra: Any = None, status: int = 200) -> web.Response:
    return web.json_response(_body(status, data, None, extra), status=status, dumps=_dumps)


def page_extra(
    filters: dict[str, Any], order_by: str | None, count: int, total: int
) -> dict[str, Any]:
    return {
        "filters": filters,
        "order_by": order_by,
        "pagination": {"count": count, "total_count": total},
    }


def error(
    status: int,
    message: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    data = {field: [message]} if field else None
    return web.json_response(
        _body(status, data, message), status=status, headers=headers, dumps=_dumps
    )


def status_of(exc: DomainError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, Unauthenticated):
        return 401
    if isinstance(exc, Conflict):
        return 409
    return 400


def domain_error(exc: DomainError, fields: dict[str, str] | None = None) -> web.Response:
    """The envelope of a domain error; ``fields`` renames service field names to REST ones."""
    status = status_of(exc)
    field, message = exc.field, exc.message
    if field is not None and fields and field in fields:
        message = message.replace(field, fields[field])
        field = fields[field]
    if status == 400 and field:
        message = message if field in message else f"{field}: {message}"
        return error(400, message, field=field)
    return error(status, message)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def rest_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(PREFIXES):
        return await handler(request)
    try:
        return await handler(request)
    except RestError as exc:
        return error(exc.status, exc.message, field=exc.field, headers=exc.headers)
    except DomainError as exc:
        return domain_error(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {404: "not found", 405: f"method {request.method} not allowed"}.get(
            exc.status, exc.reason
        )
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error(exc.status, message, headers=headers)
    except Exception:
        log.exception("REST request failed", extra={"path": request.path})
        return error(500, "internal server error")
