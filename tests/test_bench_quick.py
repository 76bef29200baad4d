"""`python -m benchmarks --quick` keeps working: every row filled, the JSON matches the table.

Nothing here asserts a speed (timings on shared machines are noise); only that the harness runs,
that every figure is measured, and the facts that are not timings: one remote fetch for a
stampede, no heavy client imported on a cold start.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

EXPECTED_PREFIXES = [
    "tempfile hit 4 KiB vs raw",
    "tempfile hit 4 KiB, TTL policy",
    "tempfile hit 4 KiB, LRU policy",
    "tempfile hit 4 KiB vs fsspec",
    "tempfile hit 4 KiB vs diskcache",
    "tempfile hit 1 MiB vs raw",
    "tempfile hit 1 MiB vs fsspec",
    "tempfile hit 1 MiB vs diskcache",
    "Redis hit 4 KiB",
    "Redis hit 1 MiB",
    "Redis hit: server commands per hit",
    "S3 miss into tempfile 1 MiB",
    "S3 miss: requests per miss",
    "stampede: 32 threads",
    "streaming ",
    "LRU hit at",
    "FIFO hit at",
    "cold start: import + build",
    "cold start: of boto3",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


def _row(report: dict, prefix: str) -> dict:
    matches = [row for row in report["rows"] if row["figure"].startswith(prefix)]
    assert len(matches) == 1, (prefix, [row["figure"] for row in report["rows"]])
    return matches[0]


def _waiting(row: dict) -> bool:
    """The row could not run because a plugin it needs is still being built."""
    return row["note"].startswith("n/a: ") and "cached_stores_factory_" in row["note"]


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.s3
def test_every_row_is_measured(quick_run: tuple[str, dict]) -> None:
    _, report = quick_run
    assert report["quick"] is True
    assert report["machine"]["cores"] >= 1
    assert len(report["rows"]) == len(EXPECTED_PREFIXES)
    waiting = []
    for prefix in EXPECTED_PREFIXES:
        row = _row(report, prefix)
        if _waiting(row):
            waiting.append(f"{row['figure']}: {row['note']}")  # a plugin not built yet
            continue
        assert isinstance(row["ours"], int | float), row
        assert math.isfinite(row["ours"]) and row["ours"] >= 0, row
        assert row["met"] in (True, False, None), row
        if row["target_kind"] == "ratio":
            assert row["baseline"] > 0, row
            assert row["ratio"] == pytest.approx(row["ours"] / row["baseline"]), row
        if row["target_kind"] == "report":
            assert row["met"] is None, row
    if waiting:
        pytest.xfail("rows wait for plugins still being built: " + "; ".join(waiting))


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.s3
def test_counted_facts(quick_run: tuple[str, dict]) -> None:
    _, report = quick_run
    assert _row(report, "stampede: 32 threads")["ours"] == 1
    heavy, rss = _row(report, "cold start: of boto3"), _row(report, "streaming ")
    if _waiting(heavy) or _waiting(rss):
        pytest.xfail(f"waiting for plugins: {heavy['note']}; {rss['note']}")
    assert heavy["ours"] == 0
    assert rss["unit"] == "MiB"
    assert isinstance(rss["ours"], float)
    assert rss["extra"]["bytes"] == [report["sizes"]["stream_bytes"]] * 3


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.s3
def test_table_prints_every_figure(quick_run: tuple[str, dict]) -> None:
    stdout, report = quick_run
    assert "| figure | ours | baseline | unit | ratio | target | met? |" in stdout
    for row in report["rows"]:
        assert f"| {row['figure']}" in stdout
    assert f"{report['machine']['cores']} cores" in stdout
