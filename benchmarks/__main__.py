"""`python -m benchmarks [--quick] [--out PATH] [--only SECTION] [--profile]`.

Runs the sections, prints one table and writes the same figures as JSON to --out.
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import cProfile
import datetime
import faulthandler
import json
import logging
import os
import platform
import pstats
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from . import (
    coldstart,
    fleet_rows,
    freshness_rows,
    fsspec_rows,
    hits,
    policies,
    redis_hits,
    remote_rows,
    s3_rows,
    streaming,
)
from ._harness import REPORT, Row, Sizes
from ._services import ServiceUnavailable, kill_children, running_redis, running_s3

# A run that takes longer than this is stuck: stop the servers and exit, never hang.
WATCHDOG_SECONDS = {True: 210.0, False: 1800.0}
GRACE_SECONDS = 20.0


def _watchdog(seconds: float) -> threading.Timer:
    """Interrupt a stuck run so its servers stop; if that does not end it, kill and exit."""

    def expire() -> None:
        print(f"benchmarks: still running after {seconds:.0f} s; giving up", file=sys.stderr)
        faulthandler.dump_traceback(file=sys.stderr)
        _thread.interrupt_main()  # KeyboardInterrupt: the servers' context managers stop them
        time.sleep(GRACE_SECONDS)
        kill_children()
        os._exit(3)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


SECTIONS = (
    "hits",
    "redis",
    "fleet",
    "s3-miss",
    "stampede",
    "streaming",
    "policies",
    "coldstart",
    "fsspec",
    "remotes",
    "revalidation",
    "integrity",
    "outage",
)


def _sections(sizes: Sizes, services: dict[str, Any]) -> dict[str, Callable[[], list[Row]]]:
    """Each section of SECTIONS, ready to run with the servers that started."""
    redis, redis_missing = services["redis"]
    s3, s3_missing = services["s3"]
    return {
        "hits": lambda: hits.run(sizes, s3),
        "redis": lambda: redis_hits.run(sizes, redis, redis_missing),
        "fleet": lambda: fleet_rows.run(sizes, redis, redis_missing),
        "s3-miss": lambda: s3_rows.run_miss(sizes, s3, s3_missing),
        "stampede": lambda: s3_rows.run_stampede(sizes, s3),
        "streaming": lambda: streaming.run(sizes, s3),
        "policies": lambda: policies.run(sizes),
        "coldstart": lambda: coldstart.run(sizes),
        "fsspec": lambda: fsspec_rows.run(sizes, s3, s3_missing),
        "remotes": lambda: remote_rows.run(sizes),
        "revalidation": lambda: freshness_rows.run_revalidation(sizes, s3, s3_missing),
        "integrity": lambda: freshness_rows.run_checksum(sizes),
        "outage": lambda: freshness_rows.run_stall(redis_missing),
    }


def _profiled(name: str, section: Callable[[], list[Row]]) -> list[Row]:
    """Run `section` under cProfile and print where its time went, to stderr."""
    profile = cProfile.Profile()
    try:
        return profile.runcall(section)
    finally:
        print(f"--- profile of {name}, by own time ---", file=sys.stderr)
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(30)


def run(sizes: Sizes, only: Sequence[str] = (), profile: bool = False) -> list[Row]:
    """Every section's rows; a section that crashes becomes one row that says how."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        services: dict[str, Any] = {}
        for name, start in (("redis", running_redis), ("s3", running_s3)):
            try:
                services[name] = (stack.enter_context(start()), "")
            except ServiceUnavailable as exc:
                services[name] = (None, f"{name} server did not start: {exc}")
        sections = _sections(sizes, services)
        for name in SECTIONS:
            if only and name not in only:
                continue
            section = sections[name]
            started = time.monotonic()
            try:
                rows.extend(_profiled(name, section) if profile else section())
            except Exception as exc:
                traceback.print_exc()
                rows.append(Row(f"{name}: error", REPORT, note=f"error: {exc!r}"[:500]))
            print(f"  [{name}: {time.monotonic() - started:.1f} s]", file=sys.stderr, flush=True)
    return rows


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table, notes numbered below it."""
    lines = [
        "| figure | ours | baseline | unit | ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for row in rows:
        met = {True: "yes", False: "**no**", None: "-"}[row.met]
        if row.ours is None:
            met = "n/a"
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        mark = ""
        if row.note:
            notes.append(row.note)
            mark = f" [{len(notes)}]"
        lines.append(
            f"| {row.figure}{mark} | {_number(row.ours)} | {_number(row.baseline)} | "
            f"{row.unit} | {ratio} | {row.target} | {met} |"
        )
    lines.append("")
    lines.extend(f"- [{index}] {note}" for index, note in enumerate(notes, 1))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, not minutes")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        choices=SECTIONS,
        help="run only this section (repeatable)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of each section to stderr"
    )
    args = parser.parse_args(argv)
    sizes = Sizes.for_run(args.quick)
    watchdog = _watchdog(WATCHDOG_SECONDS[args.quick])
    started = time.monotonic()
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    try:
        rows = run(sizes, args.only, args.profile)
    finally:
        watchdog.cancel()
    info = machine()
    elapsed = time.monotonic() - started
    print(
        f"\ncached-stores-factory benchmarks ({'QUICK' if args.quick else 'full'} run, {stamp}, "
        f"{info['cores']} cores, Python {info['python']}, {elapsed:.0f} s)\n"
    )
    print(table(rows))
    if args.out:
        report = {
            "started": stamp,
            "quick": args.quick,
            "seconds": round(elapsed, 1),
            "machine": info,
            "sizes": attrs.asdict(sizes),
            "rows": [row.as_json() for row in rows],
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
