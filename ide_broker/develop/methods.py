"""The JSON-RPC methods of the develop server, bound to one ``Session``.

Handlers stay thin: validate params (``rpc.Params``), confine paths through
``fs.Workspace``, call the service, and report file changes under the dbt
project so the warm manifest is re-parsed. Blocking file work runs in
threads; git runs as subprocesses; in-process dbt runs on its own worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .dbt_invoke import validate_args
from .dbt_runner import PREVIEW_DEFAULT_LIMIT, PREVIEW_MAX_LIMIT
from .errors import NOT_FOUND, app_error, invalid_params
from .fmt import format_sql, load_mode
from .rpc import Method, Params, Peer
from .session import Session


def _one_of(p: Params, a: str, b: str) -> str:
    """Exactly one of two params must be given; returns its name."""
    if p.has(a) == p.has(b):
        raise invalid_params(f"give exactly one of param {a!r} or param {b!r}")
    return a if p.has(a) else b


def build_methods(s: Session) -> dict[str, Method]:
    ws = s.workspace

    # -- files -------------------------------------------------------------------

    async def fs_tree(p: Params, _: Peer) -> Any:
        return await asyncio.to_thread(ws.tree, p.opt_string("path", allow_empty=True) or "")

    async def fs_read(p: Params, _: Peer) -> Any:
        return await asyncio.to_thread(ws.read, p.string("path"))

    async def fs_write(p: Params, _: Peer) -> Any:
        path, content = p.string("path"), p.string("content", allow_empty=True)
        check = p.has("version")
        expected = p.opt_string("version")
        new_version = await asyncio.to_thread(
            ws.write, path, content, check=check, expected=expected
        )
        s.touched(ws.resolve(path).rel)
        return {"version": new_version}

    async def fs_rename(p: Params, _: Peer) -> Any:
        path, new_path = p.string("path"), p.string("newPath")
        new_rel = await asyncio.to_thread(ws.rename, path, new_path)
        s.touched(ws.resolve(path).rel, new_rel)
        return {"path": new_rel}

    async def fs_delete(p: Params, _: Peer) -> Any:
        path = p.string("path")
        await asyncio.to_thread(ws.delete, path)
        s.touched(ws.resolve(path).rel)
        return {}

    async def fs_mkdir(p: Params, _: Peer) -> Any:
        await asyncio.to_thread(ws.mkdir, p.string("path"))
        return {}

    # -- git ---------------------------------------------------------------------

    async def git_status(p: Params, _: Peer) -> Any:
        return await s.git.status()

    async def git_diff(p: Params, _: Peer) -> Any:
        path = p.opt_string("path")
        paths = [ws.resolve(path).rel] if path else []
        return await s.git.diff(paths, p.boolean("staged", False))

    async def git_branches(p: Params, _: Peer) -> Any:
        return await s.git.branches()

    async def git_checkout(p: Params, _: Peer) -> Any:
        result = await s.git.checkout(p.string("branch"), p.boolean("create", False))
        s.warm.mark_stale()
        return result

    async def git_commit(p: Params, _: Peer) -> Any:
        message = p.string("message")
        if not message.strip():
            raise invalid_params("param 'message' must not be blank")
        paths = [ws.resolve(x).rel for x in p.string_list("paths", required=False)]
        return await s.git.commit(message, paths or None)

    async def git_pull(p: Params, _: Peer) -> Any:
        result = await s.git.pull()
        s.warm.mark_stale()
        return result

    async def git_push(p: Params, _: Peer) -> Any:
        return await s.git.push()

    # -- dbt ---------------------------------------------------------------------

    async def dbt_invoke(p: Params, peer: Peer) -> Any:
        args = p.string_list("args", max_items=200)
        validate_args(args)
        inv_id = s.invocations.new_id(p.opt_string("invocation"))
        return await s.invocations.run(inv_id, args, peer.notify)

    async def dbt_cancel(p: Params, _: Peer) -> Any:
        return await s.invocations.cancel(p.string("invocation"))

    async def dbt_compile(p: Params, _: Peer) -> Any:
        if _one_of(p, "sql", "path") == "sql":
            return await s.warm.compile_sql(p.string("sql"))
        path = p.string("path")
        inner = s.project_relative(ws.resolve(path).rel)
        if not inner:
            raise app_error(NOT_FOUND, "not_found", f"{path!r} is not inside the dbt project")
        return await s.warm.compile_path(inner)

    async def dbt_preview(p: Params, _: Peer) -> Any:
        # dbt wraps the query in a limiting subquery: a trailing ";" would break it.
        sql = p.string("sql").rstrip().rstrip(";")
        if not sql.strip():
            raise invalid_params("param 'sql' must contain a query")
        limit = p.integer("limit", PREVIEW_DEFAULT_LIMIT, lo=1, hi=PREVIEW_MAX_LIMIT)
        return await s.warm.preview(sql, limit)

    async def dbt_lineage(p: Params, _: Peer) -> Any:
        return await s.warm.lineage(p.string("select", max_len=10_000))

    # -- formatting and session ---------------------------------------------------

    def mode() -> Any:
        return load_mode([s.project_dir, ws.root])

    async def fmt_format(p: Params, _: Peer) -> Any:
        if _one_of(p, "sql", "path") == "sql":
            sql = p.string("sql", allow_empty=True)
            return {"content": await asyncio.to_thread(lambda: format_sql(sql, mode()))}
        path = p.string("path")
        current = await asyncio.to_thread(ws.read, path)
        formatted = await asyncio.to_thread(lambda: format_sql(current["content"], mode()))
        if formatted == current["content"]:
            return {"content": formatted, "version": current["version"], "changed": False}
        new_version = await asyncio.to_thread(
            ws.write, path, formatted, check=True, expected=current["version"]
        )
        s.touched(ws.resolve(path).rel)
        return {"content": formatted, "version": new_version, "changed": True}

    async def session_info(p: Params, _: Peer) -> Any:
        return await s.info()

    return {
        "fs.tree": Method(fs_tree, {"path"}),
        "fs.read": Method(fs_read, {"path"}),
        "fs.write": Method(fs_write, {"path", "content", "version"}),
        "fs.rename": Method(fs_rename, {"path", "newPath"}),
        "fs.delete": Method(fs_delete, {"path"}),
        "fs.mkdir": Method(fs_mkdir, {"path"}),
        "git.status": Method(git_status),
        "git.diff": Method(git_diff, {"path", "staged"}),
        "git.branches": Method(git_branches),
        "git.checkout": Method(git_checkout, {"branch", "create"}),
        "git.commit": Method(git_commit, {"message", "paths"}),
        "git.pull": Method(git_pull),
        "git.push": Method(git_push),
        "dbt.invoke": Method(dbt_invoke, {"args", "invocation"}),
        "dbt.cancel": Method(dbt_cancel, {"invocation"}),
        "dbt.compile": Method(dbt_compile, {"sql", "path"}),
        "dbt.preview": Method(dbt_preview, {"sql", "limit"}),
        "dbt.lineage": Method(dbt_lineage, {"select"}),
        "fmt.format": Method(fmt_format, {"sql", "path"}),
        "session.info": Method(session_info),
    }
