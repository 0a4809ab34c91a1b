"""Errors the domain raises; the API layers turn them into UserErrors / HTTP codes."""

from __future__ import annotations


class DomainError(Exception):
    """A request that cannot be carried out; ``code`` is machine-readable."""

    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class NotFound(DomainError):
    """Missing, or in another account: the two are indistinguishable on purpose."""

    code = "not_found"


class Forbidden(DomainError):
    code = "forbidden"


class Conflict(DomainError):
    code = "conflict"


class ValidationFailed(DomainError):
    code = "invalid"


class Unauthenticated(DomainError):
    code = "unauthenticated"
