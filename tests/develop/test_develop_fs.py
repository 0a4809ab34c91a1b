"""fs.*: tree, read/write with versions, rename, delete, mkdir, and confinement."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import RpcCallError, RpcClient


@pytest.fixture
def scratch(workspace: Path) -> Iterator[str]:
    """A fresh directory name inside the workspace, removed afterwards."""
    name = f"scratch-{uuid.uuid4().hex[:8]}"
    yield name
    shutil.rmtree(workspace / name, ignore_errors=True)


async def expect_error(client: RpcClient, method: str, code: int, **params: object
                       ) -> RpcCallError:
    with pytest.raises(RpcCallError) as info:
        await client.call(method, **params)
    assert info.value.code == code, info.value.message
    return info.value


async def test_tree_lists_files_and_skips_build_dirs(client: RpcClient, workspace: Path) -> None:
    (workspace / "analytics" / "target").mkdir(exist_ok=True)
    (workspace / "analytics" / "target" / "junk.json").write_text("{}")
    result = await client.call("fs.tree")
    by_path = {e["path"]: e for e in result["entries"]}
    assert by_path["analytics/models/stg_orders.sql"]["type"] == "file"
    assert by_path["analytics/models/stg_orders.sql"]["size"] > 0
    assert by_path["analytics/models"]["type"] == "dir"
    assert ".gitignore" in by_path
    assert not any(p.split("/")[0] in {".git", ".kiln"} or "/target" in p for p in by_path)
    sub = await client.call("fs.tree", path="analytics/models")
    assert {e["path"] for e in sub["entries"]} >= {"analytics/models/schema.yml"}
    assert all(e["path"].startswith("analytics/models/") for e in sub["entries"])


async def test_read_write_and_conflict(client: RpcClient, workspace: Path, scratch: str) -> None:
    path = f"{scratch}/nested/new.sql"
    created = await client.call("fs.write", path=path, content="select 1\n", version=None)
    disk = (workspace / path).read_bytes()
    assert disk == b"select 1\n"
    assert created["version"] == hashlib.sha256(disk).hexdigest()

    read = await client.call("fs.read", path=path)
    assert read == {"content": "select 1\n", "version": created["version"]}

    updated = await client.call(
        "fs.write", path=path, content="select 2\n", version=created["version"]
    )
    assert updated["version"] != created["version"]

    # A stale version: conflict, file untouched, current version reported.
    err = await expect_error(
        client, "fs.write", 1009, path=path, content="select 3\n", version=created["version"]
    )
    assert err.data["code"] == "conflict"
    assert err.data["currentVersion"] == updated["version"]
    assert (workspace / path).read_text() == "select 2\n"

    # version null means "create": the file exists, so that is a conflict too.
    err = await expect_error(client, "fs.write", 1009, path=path, content="x", version=None)
    assert err.data["currentVersion"] == updated["version"]

    # No version at all: overwrite.
    await client.call("fs.write", path=path, content="select 4\n")
    assert (workspace / path).read_text() == "select 4\n"
    # No temp files are left behind by the atomic writes.
    assert os.listdir(workspace / scratch / "nested") == ["new.sql"]


async def test_write_keeps_file_mode(client: RpcClient, workspace: Path, scratch: str) -> None:
    (workspace / scratch).mkdir()
    script = workspace / scratch / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    await client.call("fs.write", path=f"{scratch}/run.sh", content="#!/bin/sh\necho hi\n")
    assert script.stat().st_mode & 0o777 == 0o755


async def test_read_errors(client: RpcClient, workspace: Path, scratch: str) -> None:
    await expect_error(client, "fs.read", 1002, path=f"{scratch}/missing.sql")
    (workspace / scratch).mkdir()
    (workspace / scratch / "blob.bin").write_bytes(b"\xff\xfe\x00binary")
    err = await expect_error(client, "fs.read", 1006, path=f"{scratch}/blob.bin")
    assert err.data["code"] == "not_text"
    err = await expect_error(client, "fs.read", 1005, path=scratch)
    assert err.data["code"] == "is_directory"


async def test_rename_delete_mkdir(client: RpcClient, workspace: Path, scratch: str) -> None:
    await client.call("fs.mkdir", path=f"{scratch}/a/b")
    assert (workspace / scratch / "a" / "b").is_dir()
    await client.call("fs.mkdir", path=f"{scratch}/a/b")  # idempotent
    await client.call("fs.write", path=f"{scratch}/a/b/one.sql", content="select 1")
    await client.call("fs.write", path=f"{scratch}/two.sql", content="select 2")

    moved = await client.call("fs.rename", path=f"{scratch}/a/b/one.sql",
                              newPath=f"{scratch}/c/uno.sql")
    assert moved == {"path": f"{scratch}/c/uno.sql"}
    assert (workspace / scratch / "c" / "uno.sql").read_text() == "select 1"
    assert not (workspace / scratch / "a" / "b" / "one.sql").exists()

    err = await expect_error(client, "fs.rename", 1004, path=f"{scratch}/two.sql",
                             newPath=f"{scratch}/c/uno.sql")
    assert err.data["code"] == "already_exists"
    await expect_error(client, "fs.rename", 1002, path=f"{scratch}/nope.sql",
                       newPath=f"{scratch}/x.sql")

    await client.call("fs.delete", path=f"{scratch}/two.sql")
    assert not (workspace / scratch / "two.sql").exists()
    await client.call("fs.delete", path=f"{scratch}/a")  # a directory, recursively
    assert not (workspace / scratch / "a").exists()
    await expect_error(client, "fs.delete", 1002, path=f"{scratch}/two.sql")
    err = await expect_error(client, "fs.mkdir", 1005, path=f"{scratch}/c/uno.sql")
    assert err.data["code"] == "not_a_directory"


@pytest.mark.parametrize(
    "bad",
    ["../outside.txt", "analytics/../../outside.txt", "/etc/passwd", "//etc/passwd",
     "C:/windows", ".git/config", "analytics/.git/x", ".GIT/HEAD", "a\x00b", ""],
)
async def test_paths_outside_are_forbidden(client: RpcClient, bad: str) -> None:
    for method, params in [
        ("fs.read", {"path": bad}),
        ("fs.write", {"path": bad, "content": "pwned"}),
        ("fs.delete", {"path": bad}),
        ("fs.mkdir", {"path": bad}),
        ("fs.rename", {"path": "README.md", "newPath": bad}),
    ]:
        if bad == "":
            # An empty path is refused before confinement (must not be empty).
            await expect_error(client, method, -32602, **params)
            continue
        err = await expect_error(client, method, 1003, **params)
        assert err.data["code"] == "forbidden_path"
        assert "Forbidden path" in err.message


async def test_symlinks_leading_outside_are_forbidden(
    client: RpcClient, workspace: Path, scratch: str, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")
    (workspace / scratch).mkdir()
    (workspace / scratch / "file-link").symlink_to(outside / "secret.txt")
    (workspace / scratch / "dir-link").symlink_to(outside)
    (workspace / scratch / "git-link").symlink_to(workspace / ".git")
    (workspace / scratch / "inside-link.md").symlink_to(workspace / "README.md")

    for path in [f"{scratch}/file-link", f"{scratch}/dir-link/secret.txt",
                 f"{scratch}/git-link/config"]:
        err = await expect_error(client, "fs.read", 1003, path=path)
        assert err.data["code"] == "forbidden_path"
    # Writing through an intermediate symlinked directory: refused, nothing written.
    await expect_error(client, "fs.write", 1003, path=f"{scratch}/dir-link/new.txt",
                       content="x")
    await expect_error(client, "fs.mkdir", 1003, path=f"{scratch}/dir-link/sub")
    await expect_error(client, "fs.delete", 1003, path=f"{scratch}/dir-link/secret.txt")
    await expect_error(client, "fs.rename", 1003, path=f"{scratch}/dir-link/secret.txt",
                       newPath=f"{scratch}/stolen.txt")
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "top secret"

    # The tree does not list links that lead outside; a link inside is fine.
    tree = await client.call("fs.tree", path=scratch)
    assert [e["path"] for e in tree["entries"]] == [f"{scratch}/inside-link.md"]
    read = await client.call("fs.read", path=f"{scratch}/inside-link.md")
    assert read["content"].startswith("# workspace")
