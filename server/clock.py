"""The platform's notion of "now", injectable so schedules can be tested without sleeping.

Production uses the wall clock. Tests (and ``kiln scheduler`` under
``KILN_CLOCK_START``/``KILN_CLOCK_SPEED``) use a :class:`ScaledClock`: it
starts at a chosen instant and runs ``speed`` times faster than real time,
so two processes given the same start and speed agree on simulated time.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ScaledClock:
    def __init__(self, start: datetime, speed: float = 1.0, origin: float | None = None) -> None:
        self.start = start
        self.speed = speed
        self.origin = time.time() if origin is None else origin

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.time() - self.origin) * self.speed)


class ManualClock:
    """A clock a test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def from_env(env: dict[str, str] | None = None) -> Clock:
    env = dict(os.environ) if env is None else env
    start = env.get("KILN_CLOCK_START")
    if not start:
        return WallClock()
    origin = env.get("KILN_CLOCK_ORIGIN")
    return ScaledClock(
        datetime.fromisoformat(start).astimezone(UTC),
        float(env.get("KILN_CLOCK_SPEED", "1")),
        float(origin) if origin else None,
    )
