"""The counters a cached store keeps: CacheStats, and where each count lives."""

from __future__ import annotations

import threading
from typing import Final, NamedTuple

__all__ = [
    "COALESCED",
    "EVICTIONS",
    "FROM_LOCAL",
    "FROM_REMOTE",
    "HITS",
    "MISSES",
    "REMOTE_READS",
    "REMOTE_WRITES",
    "REVALIDATED",
    "STALE_SERVED",
    "CacheStats",
    "Counters",
]


class CacheStats(NamedTuple):
    """Counters since the cached store was built.  `as_dict()` is what `stats()` returns.

    `hits`: reads served by a fresh local entry; `misses`: reads that were not, including
    readers that waited on another thread's fetch (`coalesced` counts those alone);
    `remote_reads`/`remote_writes`: objects fetched from and written to the remote;
    `evictions`: local entries the policy removed; `revalidated`: expired copies the remote
    confirmed unchanged (no body sent); `stale_served`: expired copies served within the
    policy's `stale_while_revalidate` or, with the remote failing, `stale_if_error` window;
    `bytes_from_remote`: sizes of the fetched objects; `bytes_from_local`: sizes of the
    entries served on hits.
    """

    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    remote_reads: int = 0
    remote_writes: int = 0
    evictions: int = 0
    revalidated: int = 0
    stale_served: int = 0
    bytes_from_remote: int = 0
    bytes_from_local: int = 0

    def as_dict(self) -> dict[str, int]:
        return self._asdict()


_FIELDS: Final = CacheStats._fields
# Slots in the list of counts, found by name so CacheStats may change its order.
(
    HITS,
    MISSES,
    COALESCED,
    REMOTE_READS,
    REMOTE_WRITES,
    EVICTIONS,
    REVALIDATED,
    STALE_SERVED,
    FROM_REMOTE,
    FROM_LOCAL,
) = (
    _FIELDS.index(name)
    for name in (
        "hits",
        "misses",
        "coalesced",
        "remote_reads",
        "remote_writes",
        "evictions",
        "revalidated",
        "stale_served",
        "bytes_from_remote",
        "bytes_from_local",
    )
)


class Counters:
    """The CacheStats counters behind one lock.

    The lock is held for a few additions, never across I/O (its cost on a hit is in
    docs/performance.md), and the counts stay exact without the GIL.  `lock` and `values`
    are public so the hit path can count without a call: add to `values[HITS]` and the
    like while holding `lock`.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values = [0] * len(_FIELDS)

    def add(self, index: int, amount: int = 1) -> None:
        with self.lock:
            self.values[index] += amount

    def snapshot(self) -> CacheStats:
        with self.lock:
            return CacheStats(*self.values)
