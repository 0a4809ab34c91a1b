"""The warm in-process dbt behind compile, preview and lineage.

Why: a dbt CLI call pays 2-3 s of imports plus project parsing every time.
Here dbt is imported once, the project is parsed once in the background at
startup, and the parsed manifest is kept in memory and handed to
``dbtRunner(manifest=...)``, so compile and preview cost a fraction of that.

Invariants:

* All in-process dbt work (imports, parse, compile, show, ls) and every read
  of the in-memory manifest runs on ONE dedicated daemon thread, in
  submission order: ``dbtRunner`` is not thread-safe, and the event loop
  never blocks on dbt.
* The warm runner has its own target and log paths (``<workspace>/.kiln/``,
  git-ignored) so it never touches the ``target/`` of the dbt subprocesses
  started by ``dbt.invoke``, and it logs nothing (``--log-level none``,
  ``--log-level-file none``, ``--no-write-json``): preview rows are never
  logged or written to disk; our own log lines carry row counts only.
* Staleness: ``mark_stale`` (after file edits, checkout, pull, deps) bumps a
  generation; the next call re-parses (partial parsing on) before it runs.
  A failed parse is remembered for its generation and reported as
  ``manifest_unavailable`` until something changes again.
* Warehouse access: DuckDB allows one writing process per database file, so
  for the duckdb adapter compile and preview hold the same asyncio lock that
  serializes ``dbt.invoke`` subprocesses (a preview waits for a running
  build). The warm runner keeps its DuckDB handle only while busy (released
  after ``IDLE_RELEASE`` seconds idle, and always before a ``dbt.invoke``
  subprocess starts) so the subprocess can open the file. Other adapters do
  not take the lock. Parse and lineage never open a connection. The adapter
  cache is not pre-populated (``--no-populate-cache``): introspection
  queries run on demand.
* dbt 1.11 leaves the ``inline_query`` node in the manifest when an inline
  compile or show fails; it is removed before every inline call.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext, suppress
from pathlib import Path
from typing import Any, TypeVar

from .errors import DBT_ERROR, MANIFEST_UNAVAILABLE, NOT_FOUND, RpcError, app_error

log = logging.getLogger(__name__)

T = TypeVar("T")

PREVIEW_DEFAULT_LIMIT = 500
PREVIEW_MAX_LIMIT = 10_000
IDLE_RELEASE = 2.0  # seconds an idle warm runner keeps its DuckDB handle
_COMPILABLE = {"model", "analysis", "snapshot", "test"}
_NODE_GROUPS = (
    "nodes", "sources", "exposures", "metrics", "semantic_models", "saved_queries", "unit_tests"
)
_MAX_SAFE_INT = 2**53


class Worker:
    """One daemon thread that runs submitted callables in order."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, fut, loop))
        return await fut

    def stop(self) -> None:
        self._queue.put(None)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args, fut, loop = item
            if fut.cancelled():  # the caller went away before its turn
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                _deliver(loop, fut, None, exc)
            else:
                _deliver(loop, fut, result, None)


def _deliver(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], result: Any,
             exc: BaseException | None) -> None:
    def settle() -> None:
        if fut.cancelled():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:
        pass  # the loop is closed: nobody is waiting any more


class _Failure(Exception):
    """A dbt call that did not succeed, with the error messages dbt emitted."""

    def __init__(self, message: str, details: list[str]) -> None:
        super().__init__(message)
        self.details = details


class WarmDbt:
    def __init__(
        self,
        project_dir: Path,
        profiles_dir: Path,
        state_dir: Path,
        target: str | None,
        dbt_lock: asyncio.Lock,
    ) -> None:
        self.project_dir = project_dir
        self.dbt_lock = dbt_lock
        self.worker = Worker("kiln-warm-dbt")
        self.common = [
            "--project-dir", str(project_dir),
            "--profiles-dir", str(profiles_dir),
            "--target-path", str(state_dir / "target-warm"),
            "--log-path", str(state_dir / "logs-warm"),
            "--log-level", "none",
            "--log-level-file", "none",
            "--no-write-json",
            "--no-use-colors",
        ]
        if target:
            self.common += ["--target", target]
        self.state = "starting"
        self.error: str | None = None
        self.adapter_type: str | None = None
        self.parsed_at: float | None = None
        self.node_count = 0
        self._manifest: Any = None
        self._generation = 0
        self._parsed_generation = -1
        self._failed: tuple[int, RpcError] | None = None
        self._parse_lock = asyncio.Lock()
        self._errors: list[tuple[str, str]] = []
        self._release_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- manifest lifecycle ---------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Import dbt and parse the project in the background."""

        async def warm_up() -> None:
            try:
                await self.ensure_manifest()
            except RpcError as exc:
                log.warning("initial parse failed: %s", exc.message)

        return asyncio.create_task(warm_up(), name="kiln-warm-parse")

    def mark_stale(self) -> None:
        self._generation += 1
        if self.state == "ready":
            self.state = "stale"

    def info(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "error": self.error,
            "adapterType": self.adapter_type,
            "parsedAt": self.parsed_at,
            "nodes": self.node_count,
        }

    async def ensure_manifest(self) -> Any:
        async with self._parse_lock:
            gen = self._generation
            if self._manifest is not None and self._parsed_generation == gen:
                return self._manifest
            if self._failed is not None and self._failed[0] == gen:
                raise self._failed[1]
            self.state = "parsing"
            started = time.monotonic()
            try:
                manifest = await self.worker.run(self._parse_blocking)
            except _Failure as exc:
                self.state, self.error = "error", str(exc)
                err = app_error(
                    MANIFEST_UNAVAILABLE,
                    "manifest_unavailable",
                    f"The dbt project does not parse: {exc}",
                    details=exc.details,
                )
                self._failed = (gen, err)
                raise err from None
            self._manifest, self._parsed_generation, self._failed = manifest, gen, None
            self.error = None
            self.state = "ready" if gen == self._generation else "stale"
            self.adapter_type = manifest.metadata.adapter_type
            self.node_count = len(manifest.nodes)
            self.parsed_at = time.time()
            log.info("parsed project: %d nodes in %.2fs", self.node_count,
                     time.monotonic() - started)
            return manifest

    def _warehouse(self) -> AbstractAsyncContextManager[Any]:
        return self.dbt_lock if self.adapter_type == "duckdb" else nullcontext()

    # -- public calls -----------------------------------------------------------

    async def compile_sql(self, sql: str) -> dict[str, Any]:
        manifest = await self.ensure_manifest()
        return await self._warehouse_call(self._compile_inline_blocking, manifest, sql)

    async def compile_path(self, project_rel: str) -> dict[str, Any]:
        manifest = await self.ensure_manifest()
        return await self._warehouse_call(self._compile_path_blocking, manifest, project_rel)

    async def preview(self, sql: str, limit: int) -> dict[str, Any]:
        manifest = await self.ensure_manifest()
        started = time.monotonic()
        result = await self._warehouse_call(self._preview_blocking, manifest, sql, limit)
        log.info("preview: %d rows in %.2fs", result["rowCount"], time.monotonic() - started)
        return result

    async def lineage(self, select: str) -> dict[str, Any]:
        manifest = await self.ensure_manifest()
        return await self.worker.run(self._lineage_blocking, manifest, select)

    async def release(self) -> None:
        """Close the warm DuckDB handle (before a dbt subprocess needs the file)."""
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        if self.adapter_type == "duckdb":  # no other adapter holds a file lock
            await self.worker.run(_release_duckdb)

    async def shutdown(self) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self.release(), 2.0)  # unless dbt is mid-call
        self.worker.stop()

    async def _warehouse_call(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._warehouse():
            try:
                return await self.worker.run(fn, *args)
            finally:
                self._schedule_release()

    def _schedule_release(self) -> None:
        # Keep the DuckDB handle for back-to-back calls; free the file when idle.
        if self._release_timer is not None:
            self._release_timer.cancel()
        self._release_timer = asyncio.get_running_loop().call_later(
            IDLE_RELEASE, self._release_when_idle
        )

    def _release_when_idle(self) -> None:
        self._release_timer = None
        task = asyncio.create_task(self.release())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- blocking, worker thread only ---------------------------------------

    def _collect(self, event: Any) -> None:
        # Only error-level messages are kept; ShowNode (which carries rows) is info.
        if event.info.level == "error":
            self._errors.append((event.info.name, event.info.msg))

    def _invoke(self, manifest: Any, args: list[str]) -> Any:
        from dbt.cli.main import dbtRunner

        self._errors = []
        if manifest is not None:
            _drop_inline_nodes(manifest)
        res = dbtRunner(manifest=manifest, callbacks=[self._collect]).invoke([*args, *self.common])
        if not res.success:
            raise self._failure(res)
        return res

    def _failure(self, res: Any) -> _Failure:
        details = [msg for _, msg in self._errors]
        specific = [msg for name, msg in self._errors if name != "MainEncounteredError"]
        for node_result in getattr(res.result, "results", None) or []:
            if getattr(node_result, "status", None) in ("error", "fail") and node_result.message:
                specific.append(str(node_result.message))
        if specific:
            message = specific[0]
        elif details:
            message = details[0].removeprefix("Encountered an error:\n")
        else:
            message = str(res.exception) if res.exception else "dbt failed"
        return _Failure(message.strip(), details)

    def _parse_blocking(self) -> Any:
        res = self._invoke(None, ["parse"])
        return res.result

    def _dbt_error(self, exc: _Failure) -> RpcError:
        return app_error(DBT_ERROR, "dbt_error", str(exc), details=exc.details)

    def _compile_inline_blocking(self, manifest: Any, sql: str) -> dict[str, Any]:
        try:
            res = self._invoke(manifest, ["compile", "--inline", sql, "--no-populate-cache"])
        except _Failure as exc:
            raise self._dbt_error(exc) from None
        node = next(r.node for r in res.result.results if r.node.name == "inline_query")
        return {"compiledSql": node.compiled_code}

    def _compile_path_blocking(self, manifest: Any, project_rel: str) -> dict[str, Any]:
        node = next(
            (
                n for n in manifest.nodes.values()
                if n.original_file_path == project_rel and n.resource_type in _COMPILABLE
            ),
            None,
        )
        if node is None:
            raise app_error(
                NOT_FOUND, "not_found", f"No compilable dbt node is defined in {project_rel!r}"
            )
        if any(ch.isspace() for ch in project_rel):
            selector = "fqn:" + ".".join(node.fqn)
        else:
            selector = f"path:{project_rel}"
        try:
            res = self._invoke(
                manifest,
                ["compile", "--select", selector, "--indirect-selection", "empty",
                 "--no-populate-cache"],
            )
        except _Failure as exc:
            raise self._dbt_error(exc) from None
        for r in res.result.results:
            if r.node.unique_id == node.unique_id:
                return {"compiledSql": r.node.compiled_code, "node": node.unique_id}
        raise app_error(DBT_ERROR, "dbt_error", f"dbt did not compile {node.unique_id}")

    def _preview_blocking(self, manifest: Any, sql: str, limit: int) -> dict[str, Any]:
        try:
            res = self._invoke(
                manifest,
                ["show", "--inline", sql, "--limit", str(limit), "--no-populate-cache"],
            )
        except _Failure as exc:
            raise self._dbt_error(exc) from None
        table = res.result.results[0].agate_table
        rows = [[json_safe(v) for v in row] for row in table.rows]
        return {
            "columns": list(table.column_names),
            "types": [type(t).__name__.lower() for t in table.column_types],
            "rows": rows,
            "rowCount": len(rows),
            "limit": limit,
        }

    def _lineage_blocking(self, manifest: Any, select: str) -> dict[str, Any]:
        try:
            res = self._invoke(
                manifest,
                ["ls", "--select", select, "--output", "json", "--output-keys", "unique_id"],
            )
        except _Failure as exc:
            raise self._dbt_error(exc) from None
        selected: dict[str, Any] = {}
        for line in res.result or []:
            uid = json.loads(line)["unique_id"]
            node = _lookup(manifest, uid)
            if node is not None and node.resource_type not in ("test", "unit_test"):
                selected[uid] = node
        nodes = [_node_json(uid, node) for uid, node in selected.items()]
        edges = [
            {"from": parent, "to": uid}
            for uid, node in selected.items()
            for parent in _parents(node)
            if parent in selected
        ]
        return {"nodes": nodes, "edges": edges}


def _lookup(manifest: Any, uid: str) -> Any:
    for group in _NODE_GROUPS:
        node = (getattr(manifest, group, None) or {}).get(uid)
        if node is not None:
            return node
    return None


def _parents(node: Any) -> list[str]:
    depends_on = getattr(node, "depends_on", None)
    return list(getattr(depends_on, "nodes", None) or [])


def _node_json(uid: str, node: Any) -> dict[str, Any]:
    rtype = str(node.resource_type)
    name = f"{node.source_name}.{node.name}" if rtype == "source" else node.name
    return {
        "id": uid,
        "name": name,
        "resourceType": rtype,
        "package": node.package_name,
        "path": getattr(node, "original_file_path", None),
    }


def _drop_inline_nodes(manifest: Any) -> None:
    stray = [uid for uid, n in manifest.nodes.items() if n.resource_type == "sql_operation"]
    for uid in stray:
        manifest.nodes.pop(uid, None)


def _release_duckdb() -> None:
    """Close dbt-duckdb's process-wide database handle (it outlives invocations)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
    if env is not None:
        try:
            env.close()
        except Exception as exc:  # a failed close must not fail the call
            log.debug("closing the duckdb environment failed: %s", exc)


def json_safe(value: Any) -> Any:
    """A preview cell as a JSON value (ISO dates, exact numbers as strings if needed)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if abs(value) < _MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        as_float = float(value)
        return as_float if decimal.Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return str(value)
