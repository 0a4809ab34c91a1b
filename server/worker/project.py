"""Materializing the project for a run: a copy of a bundled path, or a shallow git clone.

The checkout lives in the run's temporary workspace and is removed with it.
A bundled copy leaves out dbt's own output (``target/``, ``logs/``,
``dbt_packages/``) so a run never sees another run's state. A git clone is
``git clone --depth 1 --branch <branch>``, or a shallow fetch of the exact
sha when the run pins one; the sha checked out is returned so it is recorded
on the run. Git never prompts (``GIT_TERMINAL_PROMPT=0``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

_IGNORE = shutil.ignore_patterns("target", "logs", "dbt_packages", ".git", "__pycache__")


class CheckoutError(Exception):
    pass


async def _git(args: list[str], cwd: Path | None, on_line: Callable[[str], None]) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    env.pop("KILN_RUN_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=str(cwd) if cwd else None,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    out: list[str] = []
    async for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        out.append(line)
        on_line(line)
    rc = await proc.wait()
    if rc != 0:
        raise CheckoutError(f"git {args[0]} failed (exit code {rc}): {' '.join(out[-3:])}")
    return "\n".join(out)


def _subdir(root: Path, sub: str) -> Path:
    sub = (sub or "").strip("/")
    if not sub:
        return root
    if any(p in ("", ".", "..") for p in sub.split("/")):
        raise CheckoutError(f"invalid project subdirectory {sub!r}")
    return root / sub


async def materialize(
    project: dict[str, Any], dest: Path, on_line: Callable[[str], None]
) -> tuple[Path, str | None, str | None]:
    """Check the project out under ``dest``; return (dbt project dir, sha, branch)."""
    url, bundled = project.get("repository_url"), project.get("bundled_path")
    branch, sha = project.get("branch"), project.get("sha")
    if url:
        on_line(f"Cloning {url} (branch {branch or 'default'}{', sha ' + sha if sha else ''})")
        if sha:
            dest.mkdir(parents=True)
            await _git(["init", "-q"], dest, on_line)
            await _git(["remote", "add", "origin", url], dest, on_line)
            try:
                await _git(["fetch", "-q", "--depth", "1", "origin", sha], dest, on_line)
            except CheckoutError:
                await _git(["fetch", "-q", "origin"], dest, on_line)
            await _git(["checkout", "-q", sha], dest, on_line)
        else:
            args = ["clone", "-q", "--depth", "1"]
            if branch:
                args += ["--branch", branch]
            await _git([*args, url, str(dest)], None, on_line)
        head = (await _git(["rev-parse", "HEAD"], dest, lambda _l: None)).strip()
        on_line(f"Checked out {head}")
        return _subdir(dest, project.get("subdirectory") or ""), head, None if sha else branch
    if bundled:
        src = Path(bundled)
        if not (src / (project.get("subdirectory") or "") / "dbt_project.yml").is_file():
            raise CheckoutError(f"bundled project not found at {src}")
        on_line(f"Copying the bundled project from {src}")
        await asyncio.to_thread(shutil.copytree, src, dest, ignore=_IGNORE, symlinks=True)
        return _subdir(dest, project.get("subdirectory") or ""), None, None
    raise CheckoutError("the project has neither a repository URL nor a bundled path")
