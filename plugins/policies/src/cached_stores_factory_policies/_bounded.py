"""FIFOCache and LRUCache: at most `depth` entries (and `max_bytes`), optionally aged."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import ClassVar

import attrs

from cached_stores_factory import CachePolicy, EntryStat, Store

from ._ledger import Bounds, Ledger, open_ledger
from ._ttl import stale_keys
from ._validators import count_at_least_one, positive_seconds

__all__ = ["FIFOCache", "LRUCache"]


@attrs.define(eq=False)
class _BoundedCache(CachePolicy):
    """The shared part of FIFO and LRU: bounds, the optional age, and the ledger.

    The ledger (see `_ledger`) lives in the local store's `state_dir()` when it has one, so
    order and bounds last across restarts and hold across processes; otherwise in memory,
    rebuilt at `bind()` from the store's entries in the order they were stored.
    """

    depth: int = attrs.field(validator=count_at_least_one)
    max_bytes: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(count_at_least_one)
    )
    ttl: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(positive_seconds)
    )
    clock: Callable[[], float] = attrs.field(default=time.time, kw_only=True, repr=False)
    _store: Store | None = attrs.field(default=None, init=False, repr=False)
    _ledger: Ledger | None = attrs.field(default=None, init=False, repr=False)

    name: ClassVar[str]  # the registered name; also names the state file

    def bind(self, store: Store) -> None:
        if self._ledger is not None:
            if store is self._store:
                return  # built twice by one factory: same store, same ledger
            raise ValueError(
                f"{self!r} is already bound to {self._store!r}; use one policy per local store"
            )
        self._ledger = open_ledger(store, Bounds(self.depth, self.max_bytes), self.name)
        self._store = store

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            raise RuntimeError(f"{self!r} is not bound to a store: build a cached store with it")
        return self._ledger

    def admits(self, size: int | None) -> bool:
        return self.max_bytes is None or size is None or size <= self.max_bytes

    def is_fresh(self, key: str, stat: EntryStat) -> bool:
        return self.ttl is None or self.clock() - stat.modified < self.ttl

    def on_insert(self, key: str, stat: EntryStat) -> Sequence[str]:
        if not self.admits(stat.size):  # the size was unknown when it was admitted
            return [key]
        return self.ledger.insert(key, stat.size, self.clock())

    def on_delete(self, key: str) -> None:
        self.ledger.remove(key)

    def expired(self) -> list[str]:
        if self.ttl is None or self._store is None:
            return []
        return stale_keys(self._store, self.clock(), self.ttl)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
            self._store = None


@attrs.define(eq=False)
class FIFOCache(_BoundedCache):
    """Keep the `depth` (and `max_bytes`) most recently stored entries; reads change nothing.

    Storing a key again (a write, or a fetch after it aged) makes it the newest.
    """

    name: ClassVar[str] = "fifo"


@attrs.define(eq=False)
class LRUCache(_BoundedCache):
    """Keep the `depth` (and `max_bytes`) most recently used entries; reads and writes use."""

    name: ClassVar[str] = "lru"

    def on_hit(self, key: str, stat: EntryStat) -> None:
        self.ledger.touch(key, self.clock())  # O(1), in memory, no lock, no system call
