"""The CachePolicy contract: the engine tells a policy of every hit, insert and delete."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from ._store import EntryStat, Store

__all__ = ["CachePolicy"]


class CachePolicy:
    """Decides which local entries are fresh and which must go.

    The base class is the "no policy" policy: everything is fresh, nothing is evicted, and
    entries live until the local store drops them.  Subclasses override what they need; each
    hook must cost O(1) or O(log n) in the number of entries, because the engine calls
    `is_fresh` and `on_hit` on every hit.

    The engine calls, in order of a key's life:
      `bind(store)` once, when a cached store is built: rebuild or load persisted state;
      `admits(size)` before storing a fetched object locally;
      `on_insert(key, stat)` after the local store holds a new version; it returns the keys
      to evict, which the engine deletes from the local store only (never from the remote);
      `is_fresh(key, stat)` and `on_hit(key, stat)` on every local hit;
      `on_delete(key)` after the engine removed an entry for any reason;
      `expired()` from `CachedStore.purge()`: keys whose local copies may go now.

    A policy whose state other processes share may also count for the whole fleet: the
    factory hands it the cached store's counters through `share_stats`, and `fleet_stats`
    returns their sum over every process (what `csf stats` shows).

    Two windows, in seconds past expiry, let the engine serve an expired copy anyway:
    `stale_while_revalidate` (served at once, refreshed in the background) and
    `stale_if_error` (served when the remote fails).  Both need `expired_for`.
    """

    clock: Callable[[], float] = staticmethod(time.time)
    stale_if_error: float = 0.0
    stale_while_revalidate: float = 0.0

    def bind(self, store: Store) -> None:
        """Attach to the local store.  Stateful policies rebuild or load their state here."""

    def limits(self) -> Mapping[str, int]:
        """The bounds the policy keeps the local store within: "entries" and "bytes", each
        when it has one (`csf stats` shows them next to the usage).  The default: none."""
        return {}

    def admits(self, size: int | None) -> bool:
        """Whether an object of `size` bytes (None: unknown) may be stored locally."""
        return True

    def is_fresh(self, key: str, stat: EntryStat) -> bool:
        """Whether a local entry may be served without asking the remote."""
        return True

    def expired_for(self, key: str, stat: EntryStat) -> float:
        """Seconds since a local entry stopped being fresh; infinity if that is unknown."""
        return math.inf

    def on_hit(self, key: str, stat: EntryStat) -> None:
        """A fresh local entry was served."""

    def on_insert(self, key: str, stat: EntryStat) -> Sequence[str]:
        """The local store now holds `key`; return the keys to evict (possibly `key` itself)."""
        return ()

    def on_delete(self, key: str) -> None:
        """The local entry for `key` is gone (deleted, invalidated or evicted)."""

    def expired(self) -> Iterable[str]:
        """Keys whose local copies are stale and may be removed now."""
        return ()

    def lease(self, key: str) -> contextlib.AbstractContextManager[object] | None:
        """A cross-process lock on `key` (see `Store.lease`), for a local store that has none.

        A policy whose state lives on a server every process reaches (a Redis ledger) can
        offer one; the local store's own lease wins when it has one.  The default: None.
        """
        return None

    def share_stats(self, snapshot: Callable[[], Mapping[str, int]]) -> None:
        """`snapshot()` returns this process's counters (CachedStore.stats()).

        A policy with shared state adds what they grew by to that state from time to time
        and at close, never on the hit path.  The default ignores them.
        """

    def fleet_stats(self) -> tuple[str, dict[str, int]] | None:
        """Where shared counters live, and their sums over every process; None if nowhere."""
        return None

    def close(self) -> None:
        """Flush and release persisted state.  Idempotent."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
