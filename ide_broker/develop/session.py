"""One develop session: the workspace, its git, its warm dbt and its dbt runs.

A develop server serves exactly one session (one user, one project), so this
object is process-wide. It owns the single asyncio lock that serializes
``dbt.invoke`` subprocesses and DuckDB access by the warm runner (see
``dbt_runner``), and it turns file changes under the dbt project into a
stale manifest. The project directory must itself be inside the workspace.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .dbt_invoke import Invocations
from .dbt_runner import WarmDbt
from .fs import Workspace
from .git import Git

log = logging.getLogger(__name__)

STATE_DIR = ".kiln"  # the server's own files inside the workspace, ignored by git
_NOT_PARSED = frozenset({"target", "logs"})


@dataclass(frozen=True, slots=True)
class Settings:
    workspace: Path
    project_subdir: str
    profiles_dir: Path
    target: str | None
    author_name: str
    author_email: str


class Session:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workspace = Workspace(settings.workspace)
        project = self.workspace.resolve(settings.project_subdir, allow_root=True)
        self.project_rel = project.rel
        self.project_dir = project.real
        state_dir = self.workspace.root / STATE_DIR
        state_dir.mkdir(exist_ok=True)
        ignore = state_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# Kiln develop server state (warm dbt target, logs)\n*\n")
        self.dbt_lock = asyncio.Lock()
        self.git = Git(self.workspace.root, settings.author_name, settings.author_email)
        self.warm = WarmDbt(
            self.project_dir, settings.profiles_dir, state_dir, settings.target, self.dbt_lock
        )
        self.invocations = Invocations(
            self.project_dir,
            settings.profiles_dir,
            settings.target,
            self.dbt_lock,
            before_start=self.warm.release,
            on_finished=lambda _command: self.warm.mark_stale(),
        )

    def start(self) -> None:
        self.warm.start()

    async def stop(self) -> None:
        await self.invocations.shutdown()
        await self.warm.shutdown()

    def project_relative(self, rel: str) -> str | None:
        """``rel`` (workspace-relative) relative to the dbt project, or None if outside."""
        if not self.project_rel:
            return rel
        if rel == self.project_rel:
            return ""
        prefix = self.project_rel + "/"
        return rel.removeprefix(prefix) if rel.startswith(prefix) else None

    def touched(self, *rels: str) -> None:
        """Files changed: the manifest is stale if any of them can affect parsing."""
        for rel in rels:
            inner = self.project_relative(rel)
            if inner is None:
                if self.project_rel.startswith(rel + "/"):  # a parent of the project moved
                    self.warm.mark_stale()
                    return
                continue
            if inner.split("/", 1)[0] not in _NOT_PARSED:
                self.warm.mark_stale()
                return

    async def info(self) -> dict[str, Any]:
        try:
            dbt_version: str | None = version("dbt-core")
        except PackageNotFoundError:
            dbt_version = None
        try:
            branch = await self.git.current_branch()
            head = await self.git.head_sha()
        except Exception as exc:  # not a git checkout (yet): still answer
            log.debug("git info unavailable: %s", exc)
            branch = head = None
        return {
            "workspace": str(self.workspace.root),
            "projectSubdir": self.project_rel,
            "projectDir": str(self.project_dir),
            "target": self.settings.target,
            "branch": branch,
            "head": head,
            "dbtVersion": dbt_version,
            "manifest": self.warm.info(),
            "invocations": sorted(self.invocations.running),
        }
