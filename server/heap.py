"""Garbage-collector settings for long-lived server processes.

A Kiln process holds a large, permanent heap once it has started (the
GraphQL schema, the ORM's models, dbt's and strawberry's modules: several
hundred thousand objects) and every request then allocates and drops tens of
thousands of short-lived ones. With CPython's default thresholds the
collector walks that permanent heap again and again: on the runs-list
benchmark full collections alone took about a tenth of the gateway's CPU.

:func:`settle` is called once a process has finished starting: it moves
everything alive then into the permanent generation (``gc.freeze``), which
the collector no longer scans, and makes young collections rarer, since
request garbage is almost all freed by reference counting anyway. Cycles
are still collected, just in larger batches.
"""

from __future__ import annotations

import gc

# collect the young generation after this many net allocations (default 700)
YOUNG_THRESHOLD = 20_000
# older generations: after this many collections of the one below (defaults 10, 10)
OLDER_THRESHOLDS = (50, 100)


def settle() -> None:
    """Freeze the startup heap out of the collector's scans; make young collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
