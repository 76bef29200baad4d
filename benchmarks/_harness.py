"""Rows, targets, sizes and the interleaved timer every benchmark shares."""

from __future__ import annotations

import gc
import resource
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@attrs.frozen
class Target:
    """What a figure must reach: `ours op limit`, or nothing (report only).

    kind "ratio" compares ours/baseline with `limit`; "value" compares ours itself.
    """

    kind: str  # "ratio", "value" or "report"
    op: str = "<="  # "<=" or "=="
    limit: float | None = None
    unit: str = ""

    def met(self, ours: float | None, ratio: float | None) -> bool | None:
        measured = ratio if self.kind == "ratio" else ours
        if self.kind == "report" or measured is None or self.limit is None:
            return None
        return measured <= self.limit if self.op == "<=" else measured == self.limit

    def __str__(self) -> str:
        if self.kind == "report":
            return "report"
        suffix = "x" if self.kind == "ratio" else (f" {self.unit}" if self.unit else "")
        return f"{self.op} {self.limit:g}{suffix}"


REPORT = Target("report")


@attrs.frozen
class Row:
    """One line of the table; `ours is None` means the row could not run (see `note`)."""

    figure: str
    target: Target
    ours: float | None = None
    baseline: float | None = None
    unit: str = ""
    note: str = ""
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def ratio(self) -> float | None:
        """ours/baseline, for timed figures; a value target (a count, MiB) has none."""
        if self.target.kind == "value" or self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline

    @property
    def met(self) -> bool | None:
        return self.target.met(self.ours, self.ratio)

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "ours": self.ours,
            "baseline": self.baseline,
            "unit": self.unit,
            "ratio": self.ratio,
            "target": str(self.target),
            "target_kind": self.target.kind,
            "target_limit": self.target.limit,
            "met": self.met,
            "note": self.note,
            "extra": dict(self.extra),
        }


def unavailable(figure: str, target: Target, reason: str) -> Row:
    """A row whose component or service is missing: it says so instead of a number."""
    return Row(figure, target, note=f"n/a: {reason}")


@attrs.frozen
class Sizes:
    """How much work each benchmark does; QUICK keeps the whole run to well under a minute."""

    quick: bool
    rounds: int  # timed rounds per figure; the median is reported
    warmup: int  # untimed calls of each contender before the first round
    small_inner: int  # calls per round for 4 KiB objects
    large_inner: int  # calls per round for 1 MiB objects
    remote_rounds: int  # rounds of S3 misses
    stream_bytes: int  # the object streamed for the RSS figure
    policy_big: int  # entries in the "large" policy figure (10**6 in a full run)
    policy_small: int  # entries in the baseline policy figure (10**3)
    cold_rounds: int  # fresh processes per contender for the cold start
    stampede_rounds: int  # cold keys raced by 32 threads

    @classmethod
    def for_run(cls, quick: bool) -> Sizes:
        if quick:
            return cls(True, 7, 20, 100, 10, 7, 256 * MiB, 5 * 10**4, 10**3, 5, 2)
        return cls(False, 31, 200, 400, 40, 31, GiB, 10**6, 10**3, 41, 5)


def faults_per_call(call: Callable[[], object], calls: int = 200) -> float:
    """Minor page faults per call of `call`, run alone in a loop: a count, not a timing.

    A hit that re-faults its result's pages on every call (a fresh mmap'd or trimmed heap
    buffer each time) shows here as ~256 faults per MiB, however noisy the clock is.
    """
    call()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        call()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def median_times(
    contenders: Mapping[str, Callable[[], object]], *, rounds: int, inner: int, warmup: int
) -> dict[str, float]:
    """Median seconds per call of each contender, timed in interleaved rounds.

    Each round times `inner` calls of every contender, in an order that rotates from round to
    round, so drift on a shared machine (frequency, page cache, neighbours) hits all alike.
    """
    names = list(contenders)
    for name in names:
        for _ in range(warmup):
            contenders[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        gc.collect()
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            call = contenders[name]
            start = time.perf_counter_ns()
            for _ in range(inner):
                call()
            samples[name].append((time.perf_counter_ns() - start) / inner / 1e9)
    return {name: statistics.median(values) for name, values in samples.items()}
