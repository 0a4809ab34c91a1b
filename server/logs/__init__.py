"""Run log lines: ingest (``ingest``); fan-out and archive build on top of it."""
