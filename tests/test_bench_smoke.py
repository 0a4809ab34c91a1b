"""The benchmark entry point runs end to end and reports every row (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.kiln_process import ROOT, kiln_env

GROUPS = {"GraphQL", "Live logs", "IDE proxy", "IDE", "Runs", "Scheduler"}


def test_bench_smoke_reports_every_row(tmp_path: Path, pg_server_url: str) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=ROOT,
        env=kiln_env(KILN_BENCH_SMOKE="1", KILN_BENCH_DATABASE_URL=pg_server_url),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["group"] for r in rows} == GROUPS
    for r in rows:
        assert isinstance(r["kiln"], int | float), r
        assert r["metric"] and r["unit"] is not None, r
        if r.get("anchor") is not None:
            assert r["ratio"] is not None, r
    assert "| GraphQL" in proc.stdout and "anchor name" in proc.stdout
