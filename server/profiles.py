"""dbt ``profiles.yml`` from a connection, credentials and their decrypted secrets.

One renderer for every place dbt runs (run workers, develop servers): the
output is ``type`` = adapter, then the connection's details (host, port,
dbname, path...), the credential fields (user, schema...), the secrets
(password, keyfile contents...) and ``threads``. Later layers win. The
result is written by the caller into a private directory (0700, file 0600).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def project_profile_name(project_dir: Path) -> str:
    """The ``profile:`` a dbt project asks for (``default`` when unset)."""
    path = project_dir / "dbt_project.yml"
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "default"
    name = doc.get("profile") if isinstance(doc, dict) else None
    return str(name) if name else "default"


def render_profiles(
    *,
    profile: str,
    target: str,
    adapter: str,
    details: dict[str, Any],
    fields: dict[str, Any],
    secrets: dict[str, Any],
    threads: int,
) -> str:
    output: dict[str, Any] = {"type": adapter, **details, **fields, **secrets, "threads": threads}
    if adapter == "postgres":
        output.setdefault("port", 5432)
        output.setdefault("schema", "public")
        output.setdefault("password", "")
    if adapter == "duckdb":
        output.setdefault("path", ":memory:")
    doc = {profile: {"target": target, "outputs": {target: output}}}
    return yaml.safe_dump(doc, sort_keys=False)


def write_private(directory: Path, content: str) -> Path:
    """Write ``profiles.yml`` into ``directory`` (created 0700), readable by its owner only."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    path = directory / "profiles.yml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    return path
