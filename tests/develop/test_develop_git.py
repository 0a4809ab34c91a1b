"""git.*: status, diff, branches, checkout, commit, push to and pull from a bare origin."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from .helpers import Project, RpcCallError, RpcClient, git


def origin_log(project: Project, branch: str = "main") -> list[str]:
    return git(project.root, "--git-dir", str(project.origin), "log", "--format=%H", branch
               ).split()


def status_of(status: dict, path: str) -> str | None:
    return next((f["status"] for f in status["files"] if f["path"] == path), None)


async def test_status_commit_diff_push(client: RpcClient, project: Project) -> None:
    ws = project.workspace
    name = f"notes-{uuid.uuid4().hex[:6]}.md"
    await client.call("fs.write", path=name, content="first line\n")
    status = await client.call("git.status")
    assert status["branch"] == "main" and status["upstream"] == "origin/main"
    assert status_of(status, name) == "untracked"
    # The server's own state (.kiln/) and dbt's target/ and logs/ are ignored.
    assert not [f for f in status["files"] if f["path"].startswith(".kiln")]

    committed = await client.call("git.commit", message=f"Add {name}", paths=[name])
    assert committed["sha"] == git(ws, "rev-parse", "HEAD").strip()
    assert git(ws, "log", "-1", "--format=%an <%ae>|%s").strip() == (
        f"Dev Tester <dev@example.com>|Add {name}"
    )
    status = await client.call("git.status")
    assert status_of(status, name) is None
    assert status["ahead"] == 1 and status["behind"] == 0

    await client.call("fs.write", path=name, content="first line\nsecond line\n")
    status = await client.call("git.status")
    assert status_of(status, name) == "modified"
    diff = await client.call("git.diff", path=name)
    assert "+second line" in diff["diff"] and f"b/{name}" in diff["diff"]
    assert (await client.call("git.diff", path=name, staged=True))["diff"] == ""
    assert "+second line" in (await client.call("git.diff"))["diff"]

    second = await client.call("git.commit", message="Second line")  # stages everything
    assert name in git(ws, "show", "--name-only", "--format=", "HEAD").split()

    pushed = await client.call("git.push")
    assert pushed["branch"] == "main"
    assert origin_log(project)[:2] == [second["sha"], committed["sha"]]
    status = await client.call("git.status")
    assert status["ahead"] == 0


async def test_branches_and_checkout(client: RpcClient, project: Project) -> None:
    ws = project.workspace
    branch = f"feature-{uuid.uuid4().hex[:6]}"
    created = await client.call("git.checkout", branch=branch, create=True)
    assert created["branch"] == branch
    try:
        name = f"{branch}.md"
        await client.call("fs.write", path=name, content="on the branch\n")
        await client.call("git.commit", message="Branch work", paths=[name])
        await client.call("git.push")
        assert len(origin_log(project, branch)) >= 2

        branches = await client.call("git.branches")
        assert branches["current"] == branch
        assert {"main", branch} <= set(branches["branches"])
        assert f"origin/{branch}" in branches["remotes"]
    finally:
        back = await client.call("git.checkout", branch="main")
    assert back["branch"] == "main"
    assert not (ws / name).exists()

    for bad in ["-x", "a..b", "with space", "ends.lock"]:
        with pytest.raises(RpcCallError) as info:
            await client.call("git.checkout", branch=bad)
        assert info.value.code == -32602 and "'branch'" in info.value.message
    with pytest.raises(RpcCallError) as info:
        await client.call("git.checkout", branch="does-not-exist")
    assert info.value.code == 1010 and info.value.data["code"] == "git_failed"
    assert "does-not-exist" in info.value.message  # git's own stderr is in the message


async def test_pull_brings_remote_commits(client: RpcClient, project: Project, tmp_path: Path
                                          ) -> None:
    await client.call("git.pull")  # in sync with origin first
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(project.origin), str(other))
    name = f"from-elsewhere-{uuid.uuid4().hex[:6]}.md"
    (other / name).write_text("pushed by someone else\n")
    git(other, "add", name)
    git(other, "commit", "-q", "-m", "Elsewhere")
    git(other, "push", "-q", "origin", "main")
    remote_head = git(other, "rev-parse", "HEAD").strip()

    status = await client.call("git.status")
    assert not (project.workspace / name).exists()
    pulled = await client.call("git.pull")
    assert (project.workspace / name).read_text() == "pushed by someone else\n"
    assert pulled["head"] == remote_head or remote_head in git(
        project.workspace, "log", "--format=%H"
    )
    status = await client.call("git.status")
    assert status["behind"] == 0


async def test_git_errors(client: RpcClient) -> None:
    with pytest.raises(RpcCallError) as info:
        await client.call("git.commit", message="Nothing here", paths=["README.md"])
    assert info.value.code == 1010
    with pytest.raises(RpcCallError) as info:
        await client.call("git.commit", message="   ")
    assert info.value.code == -32602
    with pytest.raises(RpcCallError) as info:
        await client.call("git.diff", path="../outside")
    assert info.value.code == 1003
    with pytest.raises(RpcCallError) as info:
        await client.call("git.commit", message="x", paths=[".git/config"])
    assert info.value.code == 1003
