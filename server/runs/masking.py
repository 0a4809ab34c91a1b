"""Masking of secret values in log text; pure Python, shared by the worker and the API.

Values of secret environment variables (names starting ``DBT_ENV_SECRET_``)
and of secret credential fields must never reach a stored log line. The
worker masks every line before it leaves the machine, and the API masks again
at ingest (defence in depth: an old or tampered worker cannot store a secret).

Every non-empty secret is masked, however short: a one-character secret
makes logs ugly, but the promise is "never stored", not "usually". Longer
values are replaced first so a secret that contains another is masked whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "*****"
SECRET_PREFIX = "DBT_ENV_SECRET_"


def is_secret_name(name: str) -> bool:
    return name.startswith(SECRET_PREFIX)


class Masker:
    """Replaces every occurrence of any of the given values with :data:`MASK`."""

    __slots__ = ("_pattern",)

    def __init__(self, values: Iterable[str]) -> None:
        uniq = sorted({v for v in values if v}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, uniq))) if uniq else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)
