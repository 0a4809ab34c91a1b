"""Workspaces: a developer's own checkout of a project, created once and kept.

The first start clones the project's git remote (default branch), or copies
a bundled project and makes it a git repository with one commit, so every
git feature of the IDE works. Later starts find the directory as it was
left: a workspace outlives its sessions.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from ide_broker.spawners.base import SpawnSpec

_IGNORE = shutil.ignore_patterns("target", "logs", "dbt_packages", ".git", "*.duckdb*", ".kiln")


class WorkspaceError(Exception):
    pass


async def _git(*args: str, cwd: Path | None = None) -> None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), 300)
    except TimeoutError:
        proc.kill()
        raise WorkspaceError(f"git {args[0]} timed out") from None
    if proc.returncode != 0:
        raise WorkspaceError(f"git {args[0]} failed: {err.decode(errors='replace').strip()}")


async def ensure_workspace(path: Path, spec: SpawnSpec) -> Path:
    """Create the workspace on first use; return the dbt project directory inside it."""
    if not (path.exists() and any(path.iterdir())):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".creating")
        shutil.rmtree(tmp, ignore_errors=True)
        source = spec.project_source
        if "://" in source or source.startswith("git@") or source.endswith(".git"):
            await _git("clone", "--branch", spec.default_branch, source, str(tmp))
        else:
            src = Path(source)
            if not src.is_dir():
                raise WorkspaceError(f"the project's bundled path {source} does not exist")
            shutil.copytree(src, tmp, ignore=_IGNORE, symlinks=True)
            await _git("init", "-q", "-b", spec.default_branch or "main", cwd=tmp)
            await _git("add", "-A", cwd=tmp)
            await _git(
                "-c",
                "user.name=Kiln",
                "-c",
                "user.email=kiln@localhost",
                "commit",
                "-q",
                "-m",
                "Initial workspace",
                cwd=tmp,
            )
        if path.exists():
            path.rmdir()
        tmp.rename(path)
    project_dir = (path / spec.project_subdirectory).resolve()
    if not project_dir.is_relative_to(path.resolve()) or not project_dir.is_dir():
        raise WorkspaceError(f"project subdirectory {spec.project_subdirectory!r} not found")
    return project_dir
