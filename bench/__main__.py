"""``python -m bench [--quick|--full] [--only GROUP] [--json PATH]``: the whole table.

Each benchmark module exposes ``async def run(quick: bool) -> list[dict]``;
this entry point runs them one after another (so they do not disturb each
other), prints one table and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MODULES = ["graphql", "logs", "proxy", "ide", "runs", "scheduler"]
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // (1024 * 1024)
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores, {mem} GiB, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def table(rows: list[dict[str, Any]]) -> str:
    head = ["group", "metric", "Kiln", "anchor", "anchor name", "ratio", "goal", "met"]
    body = [
        [
            r["group"],
            f"{r['metric']} ({r['unit']})",
            fmt(r["kiln"]),
            fmt(r.get("anchor")),
            r.get("anchor_name") or "-",
            fmt(r.get("ratio")),
            r.get("goal") or "-",
            {True: "yes", False: "NO", None: "-"}[r.get("met")],
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(b, widths, strict=True)) + " |"
        for b in body
    ]
    return "\n".join(lines)


async def run_all(quick: bool, only: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in only or MODULES:
        started = time.monotonic()
        print(f"== bench {name} ({'quick' if quick else 'full'}) ...", file=sys.stderr, flush=True)
        try:
            mod = importlib.import_module(f"bench.{name}")
            got = await mod.run(quick)
        except Exception as exc:  # a broken bench is reported, the others still run
            traceback.print_exc()
            got = [
                {
                    "group": name,
                    "metric": "benchmark failed",
                    "unit": "",
                    "kiln": None,
                    "anchor": None,
                    "anchor_name": None,
                    "ratio": None,
                    "goal": str(exc)[:80],
                    "met": False,
                }
            ]
        rows += got
        print(
            f"   {name}: {len(got)} rows in {time.monotonic() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small loads, under 3 minutes")
    mode.add_argument("--full", action="store_true", help="full loads and installed anchors")
    p.add_argument("--only", action="append", default=[], choices=MODULES)
    p.add_argument("--smoke", action="store_true", help="smallest loads (the test suite's check)")
    p.add_argument("--json", type=Path, help="where to write the rows (default bench/results/)")
    args = p.parse_args(argv)
    quick = not args.full
    if args.smoke:
        os.environ["KILN_BENCH_SMOKE"] = "1"
        quick = True
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    rows = asyncio.run(run_all(quick, args.only))
    print(f"\nKiln benchmarks ({'quick' if quick else 'full'} mode) on {machine()}\n")
    print(table(rows))
    out = (
        args.json
        or RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{'quick' if quick else 'full'}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "quick": quick, "rows": rows}, indent=2))
    print(f"\nrows written to {out}")
    return 0 if all(r.get("kiln") is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
