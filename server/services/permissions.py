"""Who may do what: the one permission table of Kiln.

Roles are per account (a user may be owner of one account and viewer of
another). Tokens carry a role of their own; a personal token is capped by
its user's current role in that account. Every service call names the
:class:`Action` it needs and calls :func:`require`; nothing else decides.
"""

from __future__ import annotations

import enum

from server.models import Role
from server.services.errors import Forbidden


class Action(enum.StrEnum):
    READ = "read"  # projects, environments, jobs, runs, logs, artifacts
    TRIGGER_RUN = "trigger_run"  # trigger, cancel, retry runs
    EDIT_JOBS = "edit_jobs"  # create/update/delete jobs
    EDIT_PROJECTS = "edit_projects"  # projects, environments, connections, env vars
    MANAGE_CREDENTIALS = "manage_credentials"  # deployment credentials, secret env vars
    MANAGE_MEMBERS = "manage_members"  # memberships
    MANAGE_TOKENS = "manage_tokens"  # service tokens
    MANAGE_WEBHOOKS = "manage_webhooks"
    DEVELOP = "develop"  # IDE sessions, own development credentials
    MANAGE_ACCOUNT = "manage_account"  # account settings (run slots), delete


_ALL = frozenset(Action)
PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.OWNER: _ALL,
    Role.ADMIN: _ALL - {Action.MANAGE_ACCOUNT},
    Role.DEVELOPER: frozenset({Action.READ, Action.TRIGGER_RUN, Action.EDIT_JOBS, Action.DEVELOP}),
    Role.ANALYST: frozenset({Action.READ, Action.DEVELOP}),
    Role.JOB_RUNNER: frozenset({Action.READ, Action.TRIGGER_RUN}),
    Role.VIEWER: frozenset({Action.READ}),
}

# A member may grant at most their own rank.
RANK = {
    Role.OWNER: 6,
    Role.ADMIN: 5,
    Role.DEVELOPER: 4,
    Role.ANALYST: 3,
    Role.JOB_RUNNER: 2,
    Role.VIEWER: 1,
}


def allowed(role: str, action: Action) -> bool:
    try:
        return action in PERMISSIONS[Role(role)]
    except ValueError:
        return False


def require(role: str, action: Action) -> None:
    if not allowed(role, action):
        raise Forbidden(f"the {role} role may not {action.value.replace('_', ' ')}")


def lower_role(a: str, b: str) -> str:
    """The weaker of two roles (a personal token is capped by its user's membership)."""
    return a if RANK[Role(a)] <= RANK[Role(b)] else b
