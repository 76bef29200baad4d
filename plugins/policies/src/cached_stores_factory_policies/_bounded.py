"""FIFOCache and LRUCache: at most `depth` entries (and `max_bytes`), optionally aged."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

import attrs

from cached_stores_factory import CachePolicy, EntryStat, Store

from ._ledger import Bounds, Ledger, open_ledger
from ._redis_ledger import RedisLedger
from ._ttl import seconds_past, stale_keys
from ._validators import count_at_least_one, non_negative_seconds, positive_seconds

_LEDGER_SCHEMES = ("redis", "rediss", "unix")


def _redis_url(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or urlsplit(value).scheme not in _LEDGER_SCHEMES:
        raise ValueError(
            f"{attribute.name} must be a redis://, rediss:// or unix:// URL, not "
            f"{_without_password(value)}"
        )


def _without_password(url: object) -> str:
    """The URL's repr with any password replaced by ***, for messages."""
    if isinstance(url, str) and (password := urlsplit(url).password):
        url = url.replace(f":{password}@", ":***@", 1)
    return repr(url)


def _store_identity(store: Store) -> str:
    """What names one local store the same way in every process: bucket, prefix or root."""
    bucket = getattr(store, "bucketname", None)
    prefix = getattr(store, "prefix", "")
    root = getattr(store, "root", None)
    if bucket is not None:
        return f"s3:{bucket}/{prefix}"
    if getattr(store, "redis_client", None) is not None:
        return f"redis:{prefix}"
    if root is not None:
        return f"{type(store).__name__}:{root}"
    return type(store).__name__


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
    stale_if_error: float = attrs.field(default=0.0, kw_only=True, validator=non_negative_seconds)
    stale_while_revalidate: float = attrs.field(
        default=0.0, kw_only=True, validator=non_negative_seconds
    )
    # Where the ledger lives is not part of the repr (`state` shows it): a URL may hold a
    # password, and the repr names the policy's behaviour.
    ledger: str | None = attrs.field(default=None, kw_only=True, validator=_redis_url, repr=False)
    ledger_cluster: bool = attrs.field(
        default=False, kw_only=True, validator=attrs.validators.instance_of(bool), repr=False
    )
    ledger_key: str | None = attrs.field(
        default=None,
        kw_only=True,
        validator=attrs.validators.optional(attrs.validators.instance_of(str)),
        repr=False,
    )
    lease_timeout: float = attrs.field(
        default=30.0, kw_only=True, validator=positive_seconds, repr=False
    )
    clock: Callable[[], float] = attrs.field(default=time.time, kw_only=True, repr=False)
    _store: Store | None = attrs.field(default=None, init=False, repr=False)
    _ledger: Ledger | None = attrs.field(default=None, init=False, repr=False)

    name: ClassVar[str]  # the registered name; also names the state file

    def __attrs_post_init__(self) -> None:
        if self.ttl is None and (self.stale_if_error or self.stale_while_revalidate):
            raise ValueError(
                f"{self.name}: stale_if_error and stale_while_revalidate need a ttl: "
                "without one, entries never expire"
            )
        if self.ledger_cluster and self.ledger is None:
            raise ValueError(f"{self.name}: ledger_cluster=True needs ledger='redis://...'")
        if self.ledger is not None:
            try:  # the plugin's package only: redis-py is imported when the ledger connects
                import cached_stores_factory_redis  # noqa: F401
            except ImportError:
                raise ValueError(
                    f"{self.name}: a ledger in Redis needs the redis plugin: "
                    'pip install "cached-stores-factory[redis]"'
                ) from None

    def bind(self, store: Store) -> None:
        if self._ledger is not None:
            if store is self._store:
                return  # built twice by one factory: same store, same ledger
            raise ValueError(
                f"{self!r} is already bound to {self._store!r}; use one policy per local store"
            )
        self._ledger = self._open_ledger(store, Bounds(self.depth, self.max_bytes))
        self._store = store

    def _open_ledger(self, store: Store, bounds: Bounds) -> Ledger:
        """A Redis ledger when asked for, or when the local store is Redis; else the default."""
        client = getattr(store, "redis_client", None)
        if self.ledger is None and (store.state_dir() is not None or client is None):
            return open_ledger(store, bounds, self.name)
        key = self.ledger_key or f"{self.name}:{_store_identity(store)}"
        if self.ledger is None:  # the local store's own Redis
            where = getattr(store, "where", "the local store's Redis")
            return RedisLedger(store, bounds, client, ledger_key=key, where=where, owned=False)
        from cached_stores_factory_redis import connect

        parts = urlsplit(self.ledger)
        kind = "Redis Cluster" if self.ledger_cluster else "Redis"
        where = f"{kind} at {parts.hostname or parts.path}" + (
            f":{parts.port}" if parts.port else ""
        )
        return RedisLedger(
            store,
            bounds,
            connect(url=self.ledger, cluster=self.ledger_cluster),
            ledger_key=key,
            where=where,
            owned=True,
            secrets=(parts.password, self.ledger),
        )

    @property
    def state(self) -> Ledger:
        """The bound ledger: in memory, in SQLite or in Redis."""
        if self._ledger is None:
            raise RuntimeError(f"{self!r} is not bound to a store: build a cached store with it")
        return self._ledger

    def admits(self, size: int | None) -> bool:
        return self.max_bytes is None or size is None or size <= self.max_bytes

    def is_fresh(self, key: str, stat: EntryStat) -> bool:
        if self.ttl is None:
            return True
        modified = stat.modified
        return modified is not None and self.clock() - modified < self.ttl

    def expired_for(self, key: str, stat: EntryStat) -> float:
        if self.ttl is None:
            return -math.inf  # never expires
        return seconds_past(self.clock(), stat.modified, self.ttl)

    def on_insert(self, key: str, stat: EntryStat) -> Sequence[str]:
        if not self.admits(stat.size):  # the size was unknown when it was admitted
            return [key]
        return self.state.insert(key, stat.size, self.clock())

    def on_delete(self, key: str) -> None:
        self.state.remove(key)

    def expired(self) -> list[str]:
        if self.ttl is None or self._store is None:
            return []
        return stale_keys(self._store, self.clock(), self.ttl)

    def lease(self, key: str) -> contextlib.AbstractContextManager[object] | None:
        """With a ledger in Redis: a lease on `key` there, so any local store gets one."""
        if isinstance(self._ledger, RedisLedger):
            return self._ledger.lease(key, self.lease_timeout)
        return None

    def share_stats(self, snapshot: Callable[[], Mapping[str, int]]) -> None:
        self.state.share_stats(snapshot)

    def fleet_stats(self) -> tuple[str, dict[str, int]] | None:
        return self.state.fleet_stats()

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
            self._store = None


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
            holder that died.
        clock: The current time in seconds since the epoch; tests pass a fake one.
    """


@attrs.define(eq=False)
class FIFOCache(_BoundedCache):
    __doc__ = _docstring(
        """Keep the `depth` (and `max_bytes`) most recently stored entries; reads change nothing.

    Storing a key again (a write, or a fetch after it aged) makes it the newest.""",
        evicted="the oldest stored",
    )

    name: ClassVar[str] = "fifo"


@attrs.define(eq=False)
class LRUCache(_BoundedCache):
    __doc__ = _docstring(
        "Keep the `depth` (and `max_bytes`) most recently used entries; reads and writes use.",
        evicted="the least recently used",
    )

    name: ClassVar[str] = "lru"

    def on_hit(self, key: str, stat: EntryStat) -> None:
        self.state.touch(key, self.clock())  # O(1), in memory, no lock, no system call
