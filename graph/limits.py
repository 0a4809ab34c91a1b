"""Limits every operation must pass before it executes (and so before any SQL).

* the query text is at most ``MAX_QUERY_CHARS`` characters and ``MAX_TOKENS`` tokens;
* depth at most ``MAX_DEPTH`` (introspection fields are exempt: GraphiQL's
  own schema query nests deeper than any real one needs);
* at most ``MAX_ALIASES`` aliases;
* a literal ``first`` is within 0..500 (a ``first`` passed in a variable is
  checked by the resolver, still before its query runs).

The validation rules are built once, at import: the validation cache is keyed
by the rules as well as the document, so per-request rules would never hit it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import ArgumentNode, GraphQLError, IntValueNode, ValidationContext, ValidationRule
from strawberry.extensions import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_validator
from strawberry.extensions.query_depth_limiter import IgnoreContext
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator

from server.services.queries import MAX_PAGE

MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_TOKENS = 4000
MAX_QUERY_CHARS = 32_000


def _is_introspection(ctx: IgnoreContext) -> bool:
    return ctx.field_name.startswith("__")


class PageSizeRule(ValidationRule):
    """Refuse a literal ``first`` outside 0..MAX_PAGE."""

    def enter_argument(self, node: ArgumentNode, *_args: Any) -> None:
        if node.name.value == "first" and isinstance(node.value, IntValueNode):
            value = int(node.value.value)
            if not 0 <= value <= MAX_PAGE:
                self.report_error(
                    GraphQLError(
                        f"first must be between 0 and {MAX_PAGE} (got {value})",
                        node,
                        extensions={"code": "BAD_USER_INPUT"},
                    )
                )


def _coded(rule: type[ValidationRule], code: str) -> type[ValidationRule]:
    """``rule`` with ``extensions.code`` on what it reports (strawberry's rules set none)."""

    class Coded(rule):  # type: ignore[misc, valid-type]
        def __init__(self, context: ValidationContext) -> None:
            report = context.report_error

            def coded(error: GraphQLError) -> None:
                error.extensions = {**(error.extensions or {}), "code": code}
                report(error)

            context.report_error = coded  # type: ignore[method-assign]
            try:
                super().__init__(context)
            finally:
                context.report_error = report  # type: ignore[method-assign]

    return Coded


RULES: tuple[type[ValidationRule], ...] = (
    _coded(depth_validator(MAX_DEPTH, _is_introspection), "QUERY_TOO_COMPLEX"),
    _coded(alias_validator(MAX_ALIASES), "QUERY_TOO_COMPLEX"),
    PageSizeRule,
)


class Limits(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.query is not None and len(ctx.query) > MAX_QUERY_CHARS:
            raise GraphQLError(
                f"the query is longer than {MAX_QUERY_CHARS} characters",
                extensions={"code": "QUERY_TOO_LARGE"},
            )
        ctx.parse_options["max_tokens"] = MAX_TOKENS
        ctx.validation_rules = (*ctx.validation_rules, *RULES)
        yield
