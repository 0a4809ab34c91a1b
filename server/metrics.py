"""Prometheus metrics of one Kiln process, served at ``/metrics``.

Counters and histograms are updated where things happen (dispatch, ticks,
cleanup, background tasks). Gauges that describe the database (runs by
status, queue depth) are read at scrape time by :func:`collect_db_gauges`,
so every process reports the same truth.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

TASK_RUNS = Counter("kiln_task_runs_total", "Background task passes", ["task"], registry=REGISTRY)
TASK_ERRORS = Counter(
    "kiln_task_errors_total", "Background task passes that failed", ["task"], registry=REGISTRY
)
TASK_SECONDS = Histogram(
    "kiln_task_seconds", "Duration of background task passes", ["task"], registry=REGISTRY
)
RUNS_CREATED = Counter(
    "kiln_runs_created_total", "Runs created by the scheduler", ["trigger"], registry=REGISTRY
)
TICK_LAG = Histogram(
    "kiln_tick_lag_seconds",
    "Delay between a cron tick and the creation of its run",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
    registry=REGISTRY,
)
DISPATCH_LATENCY = Histogram(
    "kiln_dispatch_latency_seconds",
    "Delay between a run's creation and its dispatch to a launcher",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
CLEANUP = Counter("kiln_cleanup_total", "Objects removed by cleanup", ["what"], registry=REGISTRY)
IS_LEADER = Gauge(
    "kiln_scheduler_leader", "1 while this process evaluates cron schedules", registry=REGISTRY
)
RUNS_BY_STATUS = Gauge("kiln_runs", "Runs by status", ["status"], registry=REGISTRY)
QUEUE_DEPTH = Gauge("kiln_queue_depth", "Queued runs", registry=REGISTRY)


async def collect_db_gauges(conn) -> None:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM run GROUP BY status")
    from server.models import RunStatus

    counts = {int(r["status"]): int(r["n"]) for r in rows}
    for status in RunStatus:
        RUNS_BY_STATUS.labels(status.name.lower()).set(counts.get(int(status), 0))
    QUEUE_DEPTH.set(counts.get(int(RunStatus.QUEUED), 0))


def render() -> bytes:
    return generate_latest(REGISTRY)
