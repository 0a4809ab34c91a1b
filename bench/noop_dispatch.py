"""Dispatch every queued run to a launcher that starts nothing (for the scheduler bench).

Times Kiln's own dispatch work only: selection, limits, the starting
transition with its token, and the handle update.
"""

from __future__ import annotations

import time

from server.dispatcher import dispatch_once
from server.launchers.base import LaunchSpec, RunLauncher, WorkerHealth, WorkerState
from server.platform import Platform


class NoopLauncher(RunLauncher):
    kind = "noop"

    async def launch(self, spec: LaunchSpec) -> str:
        return f"noop-{spec.run_id}"

    async def terminate(self, run_id: int, handle: str | None) -> None:
        return None

    async def check_health(self, run_id: int, handle: str | None) -> WorkerHealth:
        return WorkerHealth(WorkerState.RUNNING)


async def dispatch_until_done(platform: Platform, n: int, timeout: float = 60.0) -> float:
    """Seconds until ``n`` runs were dispatched (passes repeat while any are picked)."""
    launcher = NoopLauncher()
    t0 = time.perf_counter()
    done = 0
    while done < n and time.perf_counter() - t0 < timeout:
        picked = await dispatch_once(platform, launcher)
        if not picked:
            break
        done += len(picked)
    return time.perf_counter() - t0
