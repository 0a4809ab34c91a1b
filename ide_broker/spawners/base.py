"""The develop-server spawner contract (after JupyterHub's Spawner).

A spawner runs one develop server (``kiln develop``) for one IDE session:
one user, one project, one workspace. The broker owns the session row and
its state; the spawner only starts, stops and polls the server.

* ``start`` returns once the server process/pod has been created, with the
  endpoint the gateway will connect to. Readiness (answering ``/healthz``) is
  checked by the broker, not assumed.
* ``stop`` is idempotent and keeps the workspace: a later ``start`` for the
  same user and project finds the files as they were left.
* ``poll`` returns None while the server is running and an exit status
  (int, 0 if unknown) once it has stopped; it never raises for a dead server.
* ``state`` is a small JSON-able dict persisted on the session so that a
  restarted broker can re-attach (``load_state``) or clean up.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(slots=True)
class SpawnSpec:
    """What the develop server for one session needs."""

    session_id: int
    account_id: int
    user_id: int
    project_id: int
    secret: str  # the develop server accepts only connections carrying it
    workspace_key: str  # "<account>/<user>/<project>": stable across sessions
    project_source: str  # git url or bundled path the workspace is created from
    project_subdirectory: str = ""  # dbt project inside the workspace
    default_branch: str = "main"
    profiles_yml: str = ""  # the developer's own target, written privately
    # the same target as data, for spawners that can read the project's profile
    # name from the workspace (a git project's name is unknown before the clone)
    profile_output: dict[str, Any] = field(default_factory=dict)
    profile_target: str = "dev"
    env: dict[str, str] = field(default_factory=dict)


class Spawner(abc.ABC):
    """Starts, stops and polls one develop server. See the module docstring."""

    def __init__(self, spec: SpawnSpec) -> None:
        self.spec = spec

    @abc.abstractmethod
    async def start(self) -> Endpoint:
        """Create the server (and its workspace on first use); return where it listens."""

    @abc.abstractmethod
    async def stop(self, now: bool = False) -> None:
        """Stop the server; keep the workspace. ``now`` skips the graceful wait."""

    @abc.abstractmethod
    async def poll(self) -> int | None:
        """None while running, else an exit status."""

    def get_state(self) -> dict[str, Any]:
        """What to persist on the session row to re-attach after a restart."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what ``get_state`` returned (before ``poll``/``stop``)."""


def workspace_path(data_dir: Path, workspace_key: str) -> Path:
    return data_dir / "workspaces" / workspace_key
