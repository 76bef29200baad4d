"""The fleet counters in Prometheus' text exposition format, for `csf stats --prometheus`.

Written by hand, not with prometheus_client: the format is a few lines of text, and a
textfile collector (or any scraper of a file) is all an operator needs to serve it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["COUNTER_HELP", "hit_ratio", "prometheus_text"]

COUNTER_HELP: dict[str, tuple[str, str]] = {
    # counter: (metric name, help)
    "hits": ("csf_hits_total", "Reads served from a fresh local copy."),
    "misses": ("csf_misses_total", "Reads that no fresh local copy served."),
    "coalesced": ("csf_coalesced_total", "Misses that waited for another reader's fetch."),
    "remote_reads": ("csf_remote_reads_total", "Objects fetched from the remote store."),
    "remote_writes": ("csf_remote_writes_total", "Objects written to the remote store."),
    "evictions": ("csf_evictions_total", "Local copies the policy removed."),
    "revalidated": ("csf_revalidated_total", "Expired copies the remote confirmed unchanged."),
    "stale_served": ("csf_stale_served_total", "Expired copies served anyway."),
    "bytes_from_remote": ("csf_remote_read_bytes_total", "Bytes of the objects fetched."),
    "bytes_from_local": ("csf_local_read_bytes_total", "Bytes of the copies served on hits."),
}


def hit_ratio(counts: Mapping[str, int]) -> float | None:
    """hits / (hits + misses), None before the first read."""
    hits, reads = counts.get("hits", 0), counts.get("hits", 0) + counts.get("misses", 0)
    return hits / reads if reads else None


def _label(value: str) -> str:
    """A label value as the format quotes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unknown(name: str) -> tuple[str, str]:
    """A counter this version does not know (a newer process wrote it): its name, made legal."""
    return f"csf_{re.sub(r'[^a-zA-Z0-9_]', '_', name)}_total", f"The {name!r} counter."


def prometheus_text(fleet: str, counts: Mapping[str, int]) -> str:
    """Every counter of one fleet, labelled `fleet` with where its counters live.

    A ledger holds only the counters that grew: the others are 0, and printed, so that every
    series exists from the first scrape on (a rate over a missing series is no rate at all).
    """
    label = f'{{fleet="{_label(fleet)}"}}'
    lines: list[str] = []
    every = {**dict.fromkeys(COUNTER_HELP, 0), **counts}
    for name, value in sorted(every.items()):
        metric, help_text = COUNTER_HELP.get(name) or _unknown(name)
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        lines.append(f"{metric}{label} {value}")
    ratio = hit_ratio(counts)
    if ratio is not None:  # no sample at all, rather than a made-up one, before any read
        lines += [
            "# HELP csf_hit_ratio Hits over reads (hits + misses) since the counters began.",
            "# TYPE csf_hit_ratio gauge",
            f"csf_hit_ratio{label} {ratio:.6g}",
        ]
    return "\n".join(lines) + "\n"
