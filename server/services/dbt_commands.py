"""Validation of job steps: each step is one dbt command, as in dbt Cloud.

A step is parsed with shell rules and must start with ``dbt`` followed by a
known subcommand. Options that would redirect dbt's own plumbing (profiles,
project dir, log format) are refused: Kiln sets those itself.
"""

from __future__ import annotations

import shlex

from server.services.errors import ValidationFailed

SUBCOMMANDS = {
    "build",
    "run",
    "test",
    "seed",
    "snapshot",
    "compile",
    "ls",
    "list",
    "parse",
    "deps",
    "docs",
    "source",
    "run-operation",
    "show",
    "retry",
    "clean",
    "debug",
    "clone",
}
_TWO_WORD = {"docs": {"generate"}, "source": {"freshness"}}
RESERVED_FLAGS = {
    "--profiles-dir",
    "--project-dir",
    "--log-format",
    "--log-path",
    "--target-path",
    "--use-colors",
    "--no-use-colors",
    "--log-format-file",
}
MAX_STEPS = 20
MAX_STEP_LENGTH = 2000


def parse_step(command: str, *, field: str = "steps") -> list[str]:
    """The argv of a dbt step (without the leading ``dbt``), or ValidationFailed."""
    if not isinstance(command, str) or not command.strip():
        raise ValidationFailed("a step must be a non-empty dbt command", field=field)
    if len(command) > MAX_STEP_LENGTH:
        raise ValidationFailed(f"a step is longer than {MAX_STEP_LENGTH} characters", field=field)
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ValidationFailed(f"cannot parse step {command!r}: {exc}", field=field) from None
    if not argv or argv[0] != "dbt":
        raise ValidationFailed(f"step {command!r} must start with 'dbt'", field=field)
    if len(argv) < 2 or argv[1] not in SUBCOMMANDS:
        raise ValidationFailed(
            f"step {command!r}: unknown dbt command; one of {', '.join(sorted(SUBCOMMANDS))}",
            field=field,
        )
    if argv[1] in _TWO_WORD and (len(argv) < 3 or argv[2] not in _TWO_WORD[argv[1]]):
        raise ValidationFailed(
            f"step {command!r}: expected 'dbt {argv[1]} {sorted(_TWO_WORD[argv[1]])[0]}'",
            field=field,
        )
    for arg in argv[2:]:
        if arg.split("=", 1)[0] in RESERVED_FLAGS:
            raise ValidationFailed(f"step {command!r}: {arg} is set by Kiln", field=field)
    return argv[1:]


def check_steps(steps: object, *, field: str = "steps", allow_empty: bool = False) -> list[str]:
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise ValidationFailed("steps must be a list of dbt commands", field=field)
    if not steps and not allow_empty:
        raise ValidationFailed("a job needs at least one step", field=field)
    if len(steps) > MAX_STEPS:
        raise ValidationFailed(f"at most {MAX_STEPS} steps", field=field)
    out = []
    for s in steps:
        parse_step(s, field=field)
        out.append(s.strip())
    return out
