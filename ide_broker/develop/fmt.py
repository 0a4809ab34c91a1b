"""SQL formatting with sqlfmt (shandy-sqlfmt's Python API), as the CLI would.

The project's ``[tool.sqlfmt]`` settings (line_length, dialect, no_jinjafmt)
are read from ``pyproject.toml`` in the dbt project directory or else the
workspace root; never from above the workspace. Formatting is CPU-bound and
blocking: callers run it in a thread. Invalid SQL is a ``format_error``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlfmt.api import format_string
from sqlfmt.exception import SqlfmtError
from sqlfmt.mode import Mode

from .errors import FORMAT_ERROR, app_error

log = logging.getLogger(__name__)

_MODE_KEYS = {"line_length", "dialect_name", "no_jinjafmt"}


def load_mode(search_dirs: list[Path]) -> Mode:
    """The sqlfmt Mode from the first pyproject.toml among ``search_dirs``."""
    from sqlfmt.config import _load_config_from_path

    for directory in search_dirs:
        candidate = directory / "pyproject.toml"
        if not candidate.is_file():
            continue
        try:
            config: dict[str, Any] = dict(_load_config_from_path(candidate))
        except Exception as exc:  # a broken config must not break formatting
            log.warning("ignoring sqlfmt config in %s: %s", candidate, exc)
            return Mode()
        return Mode(**{k: v for k, v in config.items() if k in _MODE_KEYS})
    return Mode()


def format_sql(source: str, mode: Mode) -> str:
    try:
        return format_string(source, mode)
    except SqlfmtError as exc:
        message = str(exc).removeprefix("sqlfmt encountered an error: ")
        raise app_error(FORMAT_ERROR, "format_error", f"Cannot format: {message}") from None
