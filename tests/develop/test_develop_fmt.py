"""fmt.format: sqlfmt on a snippet, and on a file written back with a new version."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from .helpers import RpcCallError, RpcClient


async def test_format_sql_snippet(client: RpcClient) -> None:
    result = await client.call("fmt.format", sql="SELECT a,b FROM {{ ref('x') }} WHERE a=1")
    assert result == {"content": "select a, b from {{ ref('x') }} where a = 1\n"}
    with pytest.raises(RpcCallError) as info:
        await client.call("fmt.format", sql="select )")
    assert info.value.code == 1030 and info.value.data["code"] == "format_error"
    with pytest.raises(RpcCallError) as info:
        await client.call("fmt.format")
    assert info.value.code == -32602


async def test_format_file_writes_back(client: RpcClient, workspace: Path) -> None:
    path = f"fmt-{uuid.uuid4().hex[:6]}.sql"
    try:
        await client.call("fs.write", path=path, content="SELECT id,name FROM t")
        result = await client.call("fmt.format", path=path)
        disk = (workspace / path).read_bytes()
        assert disk == b"select id, name from t\n"
        assert result["changed"] is True
        assert result["version"] == hashlib.sha256(disk).hexdigest()
        again = await client.call("fmt.format", path=path)
        assert again["changed"] is False and again["version"] == result["version"]
        with pytest.raises(RpcCallError) as info:
            await client.call("fmt.format", path="../x.sql")
        assert info.value.code == 1003
    finally:
        (workspace / path).unlink(missing_ok=True)


async def test_format_uses_project_line_length(client: RpcClient, workspace: Path) -> None:
    config = workspace / "analytics" / "pyproject.toml"
    config.write_text("[tool.sqlfmt]\nline_length = 30\n")
    try:
        result = await client.call("fmt.format",
                                   sql="select alpha, beta, gamma, delta, epsilon from t")
    finally:
        config.unlink()
    assert max(len(line) for line in result["content"].splitlines()) <= 30
