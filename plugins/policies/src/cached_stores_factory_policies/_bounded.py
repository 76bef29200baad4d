"""FIFOCache and LRUCache: at most `depth` entries (and `max_bytes`), optionally aged."""

from __future__ import annotations

import math
from typing import ClassVar

import attrs

from cached_stores_factory import EntryStat

from ._ledgered import LedgeredPolicy
from ._ttl import seconds_past, stale_keys
from ._validators import count_at_least_one, positive_seconds

__all__ = ["FIFOCache", "LRUCache"]


@attrs.define(eq=False, repr=False)  # LedgeredPolicy's
class _BoundedCache(LedgeredPolicy):
    """The shared part of FIFO and LRU: bounds, the optional age, and the ledger."""

    depth: int = attrs.field(validator=count_at_least_one)
    max_bytes: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(count_at_least_one)
    )
    ttl: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(positive_seconds)
    )

    name: ClassVar[str]

    def __attrs_post_init__(self) -> None:
        if self.ttl is None and (self.stale_if_error or self.stale_while_revalidate):
            raise ValueError(
                f"{self.name}: stale_if_error and stale_while_revalidate need a ttl: "
                "without one, entries never expire"
            )
        self._check_ledger_options()

    def limits(self) -> dict[str, int]:
        if self.max_bytes is None:
            return {"entries": self.depth}
        return {"entries": self.depth, "bytes": self.max_bytes}

    def is_fresh(self, key: str, stat: EntryStat) -> bool:
        if self.ttl is None:
            return True
        modified = stat.modified
        return modified is not None and self.clock() - modified < self.ttl

    def expired_for(self, key: str, stat: EntryStat) -> float:
        if self.ttl is None:
            return -math.inf  # never expires
        return seconds_past(self.clock(), stat.modified, self.ttl)

    def expired(self) -> list[str]:
        if self.ttl is None or self._store is None:
            return []
        return stale_keys(self._store, self.clock(), self.ttl)


def _docstring(about: str, evicted: str) -> str:
    """FIFO's or LRU's docstring: `about` it, then the constructor's arguments they share."""
    return f"""{about}

    Args:
        depth: At most this many local entries; storing one more evicts {evicted}.
        max_bytes: At most this many bytes of local entries, or None for no byte bound; an
            object larger than this is served but not stored.
        ttl: Also expire an entry this many seconds after it was stored, or None: entries
            stay fresh until evicted.
        stale_if_error: Seconds past expiry during which an expired copy is served when the
            remote fails; needs `ttl`.  0 turns it off.
        stale_while_revalidate: Seconds past expiry during which an expired copy is served at
            once and refreshed in the background; needs `ttl`.  0 turns it off.
        ledger: A `redis://` URL: keep the order in that Redis, one bound for every process
            and machine.  None: the local store's Redis for a Redis store, SQLite in its
            `state_dir()` for a store that has one, else in this process.
        ledger_cluster: True when `ledger` names a node of a Redis Cluster.
        ledger_key: The ledger's name in Redis, the same in every process that shares the
            store; None derives it from the local store.
        lease_timeout: With a `ledger` URL: seconds a per-key lease in that Redis outlives a
            holder that died or stopped.
        clock: The current time in seconds since the epoch; tests pass a fake one.
    """


@attrs.define(eq=False, repr=False)  # LedgeredPolicy's
class FIFOCache(_BoundedCache):
    __doc__ = _docstring(
        """Keep the `depth` (and `max_bytes`) most recently stored entries; reads change nothing.

    Storing a key again (a write, or a fetch after it aged) makes it the newest.""",
        evicted="the oldest stored",
    )

    name: ClassVar[str] = "fifo"


@attrs.define(eq=False, repr=False)  # LedgeredPolicy's
class LRUCache(_BoundedCache):
    __doc__ = _docstring(
        "Keep the `depth` (and `max_bytes`) most recently used entries; reads and writes use.",
        evicted="the least recently used",
    )

    name: ClassVar[str] = "lru"

    def on_hit(self, key: str, stat: EntryStat) -> None:
        self.state.touch(key, self.clock())  # O(1), in memory, no lock, no system call
