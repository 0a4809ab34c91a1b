"""The checked-in SDL is what the code serves; ``kiln schema`` prints it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from graph.schema import sdl

SDL = Path(__file__).resolve().parents[2] / "graph" / "schema.graphql"


def test_schema_graphql_is_current() -> None:
    assert SDL.read_text() == sdl(), (
        "graph/schema.graphql is stale: run `kiln schema > graph/schema.graphql`"
    )


def test_kiln_schema_prints_the_sdl() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=SDL.parents[1],
    ).stdout
    assert out == SDL.read_text()
    for name in (
        "triggerJobRun(jobId: ID!, cause: String",
        "interface Node",
        "type RunConnection",
        "scheduledFor: DateTime",
        "input ScheduleInput",
    ):
        assert name in out
