"""The run launcher contract.

A launcher turns a run that the dispatcher has marked ``starting`` into a
running worker (``kiln worker run RUN_ID``) somewhere: a local subprocess or a
Kubernetes pod. It knows nothing of the database: the dispatcher and the
monitor own every status transition, the launcher only starts, stops and
observes workers.

Rules every implementation keeps:

* ``launch`` is idempotent per run id: launching a run that already has a
  worker (after a scheduler restart, say) returns the existing handle rather
  than starting a second worker.
* The run token travels to the worker without being written anywhere a
  different tenant or the process list could read it in clear.
* ``terminate`` is idempotent and kills the whole worker, dbt included.
* ``check_health`` never raises for a worker that is gone: it reports why.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything a launcher needs to start one run's worker."""

    run_id: int
    account_id: int
    job_id: int
    token: str  # run-scoped token; secret
    api_url: str  # where the worker reaches the internal API
    timeout_seconds: int | None = None
    env: dict[str, str] = field(default_factory=dict)  # extra, non-secret


class WorkerState(enum.Enum):
    RUNNING = "running"  # the worker exists and may still report
    EXITED = "exited"  # it ended; see exit_code / reason
    MISSING = "missing"  # no trace of it (never started, or gone and forgotten)
    UNKNOWN = "unknown"  # cannot tell right now (API unreachable); do not act


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    state: WorkerState
    exit_code: int | None = None
    reason: str | None = None  # human readable: "exit code 137", "OOMKilled", ...


class RunLauncher(abc.ABC):
    """Starts, stops and observes run workers. See the module docstring."""

    kind: str = "abstract"

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin background work (e.g. a shared watch). Called once."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background work. Workers keep running."""

    @abc.abstractmethod
    async def launch(self, spec: LaunchSpec) -> str:
        """Start the worker for ``spec.run_id`` and return its handle.

        The handle (a pid, a pod name) is stored on the run and handed back to
        ``terminate`` and ``check_health``, also by another process.
        """

    @abc.abstractmethod
    async def terminate(self, run_id: int, handle: str | None) -> None:
        """Kill the worker of ``run_id`` and everything it started."""

    @abc.abstractmethod
    async def check_health(self, run_id: int, handle: str | None) -> WorkerHealth:
        """Report whether the worker of ``run_id`` is still there."""
