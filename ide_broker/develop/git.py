"""Git operations on the workspace checkout, for the IDE's source-control panel.

Git always runs as an asyncio subprocess (never blocking the event loop) in
the workspace, with no terminal prompts (``GIT_TERMINAL_PROMPT=0``, batch-mode
ssh), stdin closed, a timeout (its process group is killed when it expires),
and the author identity from ``KILN_GIT_AUTHOR_NAME``/``KILN_GIT_AUTHOR_EMAIL``
passed with ``-c`` so commits never depend on global git config. Failures
become ``git_failed`` errors carrying git's own stderr. Paths given by the
client (diff, commit) are confined by the caller through ``fs.Workspace``;
branch names are checked with ``git check-ref-format``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from contextlib import suppress
from pathlib import Path
from typing import Any

from .errors import GIT_FAILED, GIT_TIMEOUT, RpcError, app_error, invalid_params

LOCAL_TIMEOUT = 30.0
REMOTE_TIMEOUT = 120.0
MAX_DIFF_CHARS = 5 * 1024 * 1024

_STATUS_WORDS = {"M": "modified", "T": "typechange", "A": "added", "D": "deleted"}


class Git:
    def __init__(self, root: Path, author_name: str, author_email: str) -> None:
        self.root = root
        self.identity = ["-c", f"user.name={author_name}", "-c", f"user.email={author_email}"]
        env = dict(os.environ)
        env.update(
            GIT_TERMINAL_PROMPT="0",
            GIT_EDITOR="true",
            LC_ALL="C",
            GIT_AUTHOR_NAME=author_name,
            GIT_AUTHOR_EMAIL=author_email,
            GIT_COMMITTER_NAME=author_name,
            GIT_COMMITTER_EMAIL=author_email,
        )
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        self.env = env

    async def run(
        self, *args: str, timeout: float = LOCAL_TIMEOUT, ok_codes: tuple[int, ...] = (0,)
    ) -> tuple[int, str, str]:
        argv = [
            "git", *self.identity, "-c", "core.quotepath=off", "-c", "commit.gpgsign=false", *args
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.root,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            raise app_error(
                GIT_TIMEOUT, "git_timeout", f"git {args[0]} timed out after {timeout:.0f}s"
            ) from None
        finally:
            if proc.returncode is None:  # cancelled: do not leave git running
                _kill_group(proc.pid)
                with suppress(Exception):
                    await asyncio.shield(proc.wait())
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        rc = proc.returncode if proc.returncode is not None else -1
        if rc not in ok_codes:
            detail = (stderr.strip() or stdout.strip() or f"exit code {rc}")[-4000:]
            raise app_error(
                GIT_FAILED,
                "git_failed",
                f"git {args[0]} failed: {detail}",
                exitCode=rc,
                stderr=stderr[-4000:],
            )
        return rc, stdout, stderr

    async def current_branch(self) -> str | None:
        _, out, _ = await self.run("symbolic-ref", "--short", "-q", "HEAD", ok_codes=(0, 1))
        return out.strip() or None

    async def _require_branch(self) -> str:
        branch = await self.current_branch()
        if branch is None:
            raise app_error(GIT_FAILED, "detached_head", "HEAD is detached: check out a branch")
        return branch

    async def head_sha(self) -> str | None:
        _, out, _ = await self.run("rev-parse", "-q", "--verify", "HEAD", ok_codes=(0, 1))
        return out.strip() or None

    async def status(self) -> dict[str, Any]:
        _, out, _ = await self.run(
            "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"
        )
        return parse_status_v2(out)

    async def diff(self, paths: list[str], staged: bool) -> dict[str, Any]:
        args = ["diff", "--no-color", "--no-ext-diff"]
        if staged:
            args.append("--cached")
        _, out, _ = await self.run(*args, "--", *paths)
        truncated = len(out) > MAX_DIFF_CHARS
        return {"diff": out[:MAX_DIFF_CHARS], "truncated": truncated}

    async def branches(self) -> dict[str, Any]:
        _, out, _ = await self.run(
            "for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes"
        )
        local: list[str] = []
        remote: list[str] = []
        for ref in out.splitlines():
            if ref.startswith("refs/heads/"):
                local.append(ref.removeprefix("refs/heads/"))
            elif ref.startswith("refs/remotes/") and not ref.endswith("/HEAD"):
                remote.append(ref.removeprefix("refs/remotes/"))
        return {"current": await self.current_branch(), "branches": local, "remotes": remote}

    async def check_branch_name(self, name: str) -> None:
        if name.startswith("-"):
            raise invalid_params(f"param 'branch' is not a valid branch name: {name!r}")
        try:
            await self.run("check-ref-format", "--branch", name)
        except RpcError:
            raise invalid_params(f"param 'branch' is not a valid branch name: {name!r}") from None

    async def checkout(self, branch: str, create: bool) -> dict[str, Any]:
        await self.check_branch_name(branch)
        await self.run("switch", *(["-c"] if create else []), branch)
        return {"branch": await self.current_branch(), "head": await self.head_sha()}

    async def commit(self, message: str, paths: list[str] | None) -> dict[str, Any]:
        if paths:
            await self.run("add", "-A", "--", *paths)
            await self.run("commit", "-q", "-m", message, "--", *paths)
        else:
            await self.run("add", "-A")
            await self.run("commit", "-q", "-m", message)
        return {"sha": await self.head_sha(), "branch": await self.current_branch()}

    async def pull(self) -> dict[str, Any]:
        branch = await self._require_branch()
        _, out, err = await self.run(
            "pull", "--no-rebase", "--no-edit", "origin", branch, timeout=REMOTE_TIMEOUT
        )
        return {"branch": branch, "head": await self.head_sha(), "output": (out + err).strip()}

    async def push(self) -> dict[str, Any]:
        branch = await self._require_branch()
        _, out, err = await self.run(
            "push", "--set-upstream", "origin", f"refs/heads/{branch}:refs/heads/{branch}",
            timeout=REMOTE_TIMEOUT,
        )
        return {"branch": branch, "head": await self.head_sha(), "output": (out + err).strip()}


def _kill_group(pid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _status_word(xy: str) -> str:
    if "R" in xy:
        return "renamed"
    if "C" in xy:
        return "copied"
    if xy[0] == "A":
        return "added"
    for ch in (xy[0], xy[1]):
        if ch in _STATUS_WORDS:
            return _STATUS_WORDS[ch]
    return "modified"


def parse_status_v2(out: str) -> dict[str, Any]:
    """Parse ``git status --porcelain=v2 --branch -z``."""
    result: dict[str, Any] = {"branch": None, "upstream": None, "ahead": 0, "behind": 0}
    files: list[dict[str, Any]] = []
    records = out.split("\0")
    i = 0
    while i < len(records):
        rec = records[i]
        i += 1
        if not rec:
            continue
        if rec.startswith("# branch.head "):
            head = rec.removeprefix("# branch.head ")
            result["branch"] = None if head == "(detached)" else head
        elif rec.startswith("# branch.upstream "):
            result["upstream"] = rec.removeprefix("# branch.upstream ")
        elif rec.startswith("# branch.ab "):
            ahead, behind = rec.removeprefix("# branch.ab ").split()
            result["ahead"], result["behind"] = int(ahead), -int(behind)
        elif rec[0] == "1":
            fields = rec.split(" ", 8)
            xy = fields[1]
            files.append(_file(fields[8], xy, _status_word(xy)))
        elif rec[0] == "2":
            fields = rec.split(" ", 9)
            xy = fields[1]
            entry = _file(fields[9], xy, _status_word(xy))
            entry["origPath"] = records[i]
            i += 1
            files.append(entry)
        elif rec[0] == "u":
            fields = rec.split(" ", 10)
            files.append(_file(fields[10], fields[1], "conflicted"))
        elif rec[0] == "?":
            files.append(_file(rec[2:], "??", "untracked"))
    result["files"] = files
    return result


def _file(path: str, xy: str, status: str) -> dict[str, Any]:
    return {
        "path": path,
        "status": status,
        "index": xy[0],
        "worktree": xy[1],
        "staged": xy[0] not in ".?",
    }
