"""dbt plumbing of the worker: the private profiles.yml, command lines, JSON log events.

* ``profiles.yml`` is written into a fresh temporary directory (mode 0700)
  with mode 0600 and removed when the run ends; it is the only place the
  warehouse password is written to disk. The profile is built from the
  connection details (non-secret), the credential fields and the decrypted
  credential secrets, with the names each adapter expects (``dbname`` and
  ``user`` for postgres; ``path`` for duckdb).
* Every dbt invocation gets ``--log-format json --no-use-colors`` and
  ``--profiles-dir/--project-dir/--target``; threads live in the profile,
  so commands that take no ``--threads`` still work.
* Each stdout line is one JSON event (``info.name/level/msg/ts``,
  ``data.node_info.unique_id``); anything else (tracebacks, a crashed
  adapter) is kept as a plain line.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ARTIFACT_FILES = ("manifest.json", "run_results.json", "sources.json", "catalog.json")
_RESULT_ERRORS = ("RunResultError", "RunResultFailure", "RunResultErrorNoMessage")


def dbt_executable() -> str:
    """The ``dbt`` next to this interpreter (the worker's venv), else the one on PATH."""
    local = Path(sys.executable).parent / "dbt"
    if local.exists():
        return str(local)
    found = shutil.which("dbt")
    if not found:
        raise FileNotFoundError("dbt is not installed next to the worker")
    return found


def profile_name(project_dir: Path) -> str:
    doc = yaml.safe_load((project_dir / "dbt_project.yml").read_text()) or {}
    return str(doc.get("profile") or doc.get("name") or "default")


def build_output(spec: dict[str, Any]) -> dict[str, Any]:
    """The target's output block for the spec's connection and credentials."""
    conn = spec["connection"]
    adapter = conn["adapter_type"]
    creds = spec["credentials"]
    target = spec["target"]
    out: dict[str, Any] = {"type": adapter}
    out.update(conn.get("details") or {})
    out.update(creds.get("fields") or {})
    out.update(creds.get("secrets") or {})
    if adapter == "postgres":
        if "database" in out and "dbname" not in out:
            out["dbname"] = out.pop("database")
        if "username" in out and "user" not in out:
            out["user"] = out.pop("username")
        out.setdefault("port", 5432)
        out.setdefault("schema", "public")
    elif adapter == "duckdb":
        out.setdefault("schema", "main")
    if target.get("schema"):
        out["schema"] = target["schema"]
    out["threads"] = int(target.get("threads") or 4)
    return out


def write_profiles(spec: dict[str, Any], project_dir: Path, base: Path | None = None) -> Path:
    """Write the private profiles.yml; return its directory (remove it when done)."""
    d = Path(tempfile.mkdtemp(prefix="kiln-profiles-", dir=base))
    os.chmod(d, 0o700)
    target = spec["target"]["name"] or "default"
    doc = {profile_name(project_dir): {"target": target, "outputs": {target: build_output(spec)}}}
    path = d / "profiles.yml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return d


def command_argv(
    command: str, *, profiles_dir: Path, project_dir: Path, target: str, vars: Any = None
) -> list[str]:
    """``dbt build -s x`` → the full argv of that invocation."""
    argv = shlex.split(command)
    if not argv or argv[0] != "dbt":
        raise ValueError(f"not a dbt command: {command!r}")
    full = [dbt_executable(), "--log-format", "json", "--no-use-colors", *argv[1:]]
    full += ["--profiles-dir", str(profiles_dir), "--project-dir", str(project_dir)]
    full += ["--target", target]
    if vars and "--vars" not in argv:
        full += ["--vars", json.dumps(vars) if not isinstance(vars, str) else vars]
    return full


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def parse_line(raw: str) -> dict[str, Any]:
    """One stdout line → ``{ts, level, message, eventName, nodeId}``."""
    text = raw.rstrip("\r\n")
    if text.startswith("{"):
        try:
            doc = json.loads(text)
            info = doc["info"]
            data = doc.get("data") or {}
            node = data.get("node_info") or {}
            return {
                "ts": info.get("ts") or now_iso(),
                "level": info.get("level") or "info",
                "message": info.get("msg") or "",
                "eventName": info.get("name"),
                "nodeId": node.get("unique_id") if isinstance(node, dict) else None,
            }
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    return {"ts": now_iso(), "level": "info", "message": text, "eventName": None, "nodeId": None}


class StepOutcome:
    """Collects what a failed step's message is made of while its lines go by."""

    def __init__(self) -> None:
        self.result_errors: list[str] = []
        self.errors: list[str] = []
        self.plain_tail: list[str] = []

    def feed(self, line: dict[str, Any]) -> None:
        msg = (line.get("message") or "").strip()
        if not msg:
            return
        if line.get("eventName") in _RESULT_ERRORS:
            self.result_errors.append(msg)
        elif line.get("level") == "error":
            self.errors.append(msg)
        elif line.get("eventName") is None:
            self.plain_tail = [*self.plain_tail[-9:], msg]

    def message(self, returncode: int) -> str:
        parts = self.result_errors[:10] or self.errors[-5:] or self.plain_tail[-5:]
        text = "\n".join(parts) if parts else f"dbt exited with code {returncode}"
        return text[:4000]


def artifact_files(target_dir: Path, since: float) -> list[tuple[str, Path]]:
    """(path relative to target/, file) written at or after ``since``: what a step produced."""
    out: list[tuple[str, Path]] = []
    if not target_dir.is_dir():
        return out
    for name in ARTIFACT_FILES:
        p = target_dir / name
        if p.is_file() and p.stat().st_mtime >= since:
            out.append((name, p))
    compiled = target_dir / "compiled"
    if compiled.is_dir():
        for p in sorted(compiled.rglob("*.sql")):
            if p.is_file() and p.stat().st_mtime >= since:
                out.append((p.relative_to(target_dir).as_posix(), p))
    return out
