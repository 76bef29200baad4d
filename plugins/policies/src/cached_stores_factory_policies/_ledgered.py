"""LedgeredPolicy: the part of a policy that keeps a ledger of its entries to bound them.

FIFO and LRU always keep one; TTL keeps one when it has a bound.  Where the ledger lives
(memory, SQLite in the local store's state directory, or Redis) is chosen at `bind()`; the
ledger modules are imported there, so a policy that needs none never loads them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import attrs

from cached_stores_factory import CachePolicy, EntryStat, Store

from ._validators import non_negative_seconds, positive_seconds

if TYPE_CHECKING:
    from ._ledger import Bounds, Ledger

__all__ = ["LedgeredPolicy"]

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


@attrs.define(eq=False, repr=False)
class LedgeredPolicy(CachePolicy):
    """Bounds kept in a ledger (see `_ledger`): in the local store's `state_dir()` when it has
    one, so they last across restarts and hold across processes; in Redis when `ledger`
    names one (or the local store is Redis); otherwise in memory, rebuilt at `bind()` from
    the store's entries in the order they were stored.  A subclass's `limits()` names the
    bounds; a policy with none keeps no ledger.  The stale windows (see CachePolicy) are
    here too, as every policy of the plugin takes them.
    """

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
        default=1.5, kw_only=True, validator=positive_seconds, repr=False
    )
    clock: Callable[[], float] = attrs.field(default=time.time, kw_only=True, repr=False)
    _store: Store | None = attrs.field(default=None, init=False, repr=False)
    _ledger: Ledger | None = attrs.field(default=None, init=False, repr=False)

    name: ClassVar[str]  # the registered name; also names the state file

    def __repr__(self) -> str:
        """The arguments in the constructor's order (attrs's would list this class's first)."""
        shown = sorted((a for a in attrs.fields(type(self)) if a.repr), key=lambda a: a.kw_only)
        arguments = ", ".join(f"{a.name}={getattr(self, a.name)!r}" for a in shown)
        return f"{type(self).__name__}({arguments})"

    def _check_ledger_options(self) -> None:
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
        limits = self.limits()
        if not limits:
            self._store = store  # no ledger: nothing ties the policy to one store
            return
        if self._store is not None:
            if store is self._store:
                return  # built twice by one factory: same store, same ledger
            raise ValueError(
                f"{self!r} is already bound to {self._store!r}; use one policy per local store"
            )
        from ._ledger import Bounds

        bounds = Bounds(limits.get("entries"), limits.get("bytes"))
        self._ledger = self._open_ledger(store, bounds)
        self._store = store

    def _open_ledger(self, store: Store, bounds: Bounds) -> Ledger:
        """A Redis ledger when asked for, or when the local store is Redis; else the default."""
        from ._ledger import open_ledger
        from ._redis_ledger import RedisLedger

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
        max_bytes = self.limits().get("bytes")
        return max_bytes is None or size is None or size <= max_bytes

    def on_insert(self, key: str, stat: EntryStat) -> Sequence[str]:
        if not self.limits():
            return ()
        if not self.admits(stat.size):  # the size was unknown when it was admitted
            return [key]
        return self.state.insert(key, stat.size, self.clock())

    def on_delete(self, key: str) -> None:
        if self.limits():
            self.state.remove(key)

    def lease(self, key: str) -> contextlib.AbstractContextManager[object] | None:
        """With a ledger in Redis: a lease on `key` there, so any local store gets one."""
        if self._ledger is None:
            return None
        from ._redis_ledger import RedisLedger  # imported by bind() already

        if isinstance(self._ledger, RedisLedger):
            return self._ledger.lease(key, self.lease_timeout)
        return None

    def share_stats(self, snapshot: Callable[[], Mapping[str, int]]) -> None:
        if self.limits():
            self.state.share_stats(snapshot)

    def fleet_stats(self) -> tuple[str, dict[str, int]] | None:
        return self.state.fleet_stats() if self.limits() else None

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        self._store = None
