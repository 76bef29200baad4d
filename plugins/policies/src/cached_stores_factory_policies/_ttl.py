"""TTLCache: an entry is fresh for `interval` seconds after the local store received it,
and the local store holds at most `max_entries` entries and `max_bytes` bytes when given."""

from __future__ import annotations

import math
from typing import ClassVar

import attrs

from cached_stores_factory import EntryStat, Store
from cached_stores_factory.errors import KeyNotFoundError

from ._ledgered import LedgeredPolicy
from ._validators import count_at_least_one, positive_seconds

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


@attrs.define(eq=False, repr=False)  # LedgeredPolicy's
class TTLCache(LedgeredPolicy):
    """Serve a local entry for `interval` seconds after it was stored (fetched or written).

    Freshness is `clock() - stat.modified < interval`, where `stat.modified` is the time the
    local store received the entry (a file's mtime, a memory store's stamp; for a store that
    can't say, the engine's own record, and an entry of unknown age is stale).  So ages
    survive restarts and agree across processes with no state of its own, and a hit costs
    one subtraction.  Stale copies are replaced (or revalidated) on their next read and
    removed all at once by `CachedStore.purge()`.

    `max_entries` and `max_bytes` bound the local store: when an insert goes over either,
    the oldest stored entries are evicted, as FIFOCache does, through the same ledger (kept
    where FIFO keeps it, see `ledger`).  Without them the policy keeps no state at all.

    Args:
        interval: Seconds an entry is fresh after the local store received it (fetched or
            written); above 0.
        stale_if_error: Seconds past expiry during which an expired copy is served when the
            remote fails (refused, reset, 5xx after retries, timed out); 0 turns it off.
        stale_while_revalidate: Seconds past expiry during which an expired copy is served at
            once and refreshed in the background; 0 turns it off.
        max_entries: At most this many local entries, or None for no entry bound; storing
            one more evicts the oldest stored.
        max_bytes: At most this many bytes of local entries, or None for no byte bound; an
            object larger than this is served but not stored.
        ledger: With a bound, a `redis://` URL: keep the order in that Redis, one bound for
            every process and machine.  None: where FIFOCache keeps it.
        ledger_cluster: True when `ledger` names a node of a Redis Cluster.
        ledger_key: The ledger's name in Redis; None derives it from the local store.
        lease_timeout: With a `ledger` URL: seconds a per-key lease in that Redis outlives a
            holder that died or stopped.
        clock: The current time in seconds since the epoch; tests pass a fake one.
    """

    interval: float = attrs.field(validator=positive_seconds)
    max_bytes: int | None = attrs.field(
        default=None, kw_only=True, validator=attrs.validators.optional(count_at_least_one)
    )
    max_entries: int | None = attrs.field(
        default=None, kw_only=True, validator=attrs.validators.optional(count_at_least_one)
    )

    name: ClassVar[str] = "ttl"

    def __attrs_post_init__(self) -> None:
        self._check_ledger_options()
        if self.ledger is not None and not self.limits():
            raise ValueError(
                "ttl: a ledger keeps bounds, and this policy has none: give max_entries or "
                "max_bytes, or drop ledger"
            )

    def limits(self) -> dict[str, int]:
        bounds = {"entries": self.max_entries, "bytes": self.max_bytes}
        return {name: limit for name, limit in bounds.items() if limit is not None}

    def is_fresh(self, key: str, stat: EntryStat) -> bool:
        modified = stat.modified
        return modified is not None and self.clock() - modified < self.interval

    def expired_for(self, key: str, stat: EntryStat) -> float:
        return seconds_past(self.clock(), stat.modified, self.interval)

    def expired(self) -> list[str]:
        if self._store is None:
            return []
        return stale_keys(self._store, self.clock(), self.interval)
