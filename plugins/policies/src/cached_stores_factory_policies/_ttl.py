"""TTLCache: an entry is fresh for `interval` seconds after the local store received it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import attrs

from cached_stores_factory import CachePolicy, EntryStat, Store
from cached_stores_factory.errors import KeyNotFoundError

from ._validators import non_negative_seconds, positive_seconds

__all__ = ["TTLCache", "seconds_past", "stale_keys"]


def seconds_past(now: float, modified: float | None, lifetime: float) -> float:
    """How long ago an entry stored at `modified` outlived `lifetime`: negative while fresh."""
    return math.inf if modified is None else now - modified - lifetime


def stale_keys(store: Store, now: float, ttl: float) -> list[str]:
    """Keys of `store` whose entries are `ttl` seconds old or older at `now`.

    It stats every entry: meant for `purge()`, never for the hit path.
    """
    stale = []
    for key in list(store.keys()):
        try:
            modified = store.stat(key).modified
        except KeyNotFoundError:
            continue  # removed meanwhile
        if modified is None or now - modified >= ttl:  # unknown age counts as stale
            stale.append(key)
    return stale


@attrs.define(eq=False)
class TTLCache(CachePolicy):
    """Serve a local entry for `interval` seconds after it was stored (fetched or written).

    Stateless by design: freshness is `clock() - stat.modified < interval`, where
    `stat.modified` is the time the local store received the entry (a file's mtime, a memory
    store's stamp; for a store that can't say, the engine's own record, and an entry of
    unknown age is stale).  So ages survive restarts and agree across processes with no
    state of its own, and a hit costs one subtraction.  Stale copies are replaced (or
    revalidated) on their next read and removed all at once by `CachedStore.purge()`.

    Args:
        interval: Seconds an entry is fresh after the local store received it (fetched or
            written); above 0.
        stale_if_error: Seconds past expiry during which an expired copy is served when the
            remote fails (refused, reset, 5xx after retries, timed out); 0 turns it off.
        stale_while_revalidate: Seconds past expiry during which an expired copy is served at
            once and refreshed in the background; 0 turns it off.
        clock: The current time in seconds since the epoch; tests pass a fake one.
    """

    interval: float = attrs.field(validator=positive_seconds)
    stale_if_error: float = attrs.field(default=0.0, kw_only=True, validator=non_negative_seconds)
    stale_while_revalidate: float = attrs.field(
        default=0.0, kw_only=True, validator=non_negative_seconds
    )
    clock: Callable[[], float] = attrs.field(default=time.time, kw_only=True, repr=False)
    _store: Store | None = attrs.field(default=None, init=False, repr=False)

    def bind(self, store: Store) -> None:
        self._store = store

    def is_fresh(self, key: str, stat: EntryStat) -> bool:
        modified = stat.modified
        return modified is not None and self.clock() - modified < self.interval

    def expired_for(self, key: str, stat: EntryStat) -> float:
        return seconds_past(self.clock(), stat.modified, self.interval)

    def expired(self) -> list[str]:
        if self._store is None:
            return []
        return stale_keys(self._store, self.clock(), self.interval)
