"""Cron schedules: parsing and fire times (APScheduler's CronTrigger does the calendar).

Standard 5-field cron in an IANA time zone (UTC by default). Fire times are
computed in the job's zone and stored in UTC; DST gaps and repeats follow
CronTrigger's rules. dbt Cloud's convenience forms (``@hourly``, ``@daily``...)
are accepted too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from server.services.errors import ValidationFailed

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_TICK = timedelta(microseconds=1)


@lru_cache(maxsize=4096)
def parse_schedule(cron: str, timezone: str = "UTC") -> CronTrigger:
    """A trigger for ``cron`` in ``timezone``, or ValidationFailed naming the bad part.

    Cached: a trigger is immutable and thousands of jobs share a few schedules.
    """
    expr = ALIASES.get(cron.strip().lower(), cron.strip())
    if len(expr.split()) != 5:
        raise ValidationFailed(
            f"cron {cron!r} must have 5 fields (minute hour day month weekday)", field="cron"
        )
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(f"unknown time zone {timezone!r}", field="timezone") from None
    try:
        return CronTrigger.from_crontab(expr, timezone=zone)
    except ValueError as exc:
        raise ValidationFailed(f"invalid cron {cron!r}: {exc}", field="cron") from None


def next_after(trigger: CronTrigger, after: datetime) -> datetime | None:
    """The first fire time strictly after ``after``."""
    return trigger.get_next_fire_time(None, after + _TICK)


def fire_times(
    trigger: CronTrigger, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """Fire times in (after, until], oldest first, at most the LAST ``limit`` of them.

    Walks forward, so a long outage costs ``O(missed ticks)``; callers bound
    the window (see ``ticks.MAX_LOOKBACK``).
    """
    out: list[datetime] = []
    t = next_after(trigger, after)
    while t is not None and t <= until:
        out.append(t)
        if len(out) > limit:
            out.pop(0)
        t = next_after(trigger, t)
    return out
