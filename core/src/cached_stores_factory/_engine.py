"""The cached store users hold: the hit path, and the doors to the fetch and write paths."""

from __future__ import annotations

import errno
import functools
import io
import threading
from collections.abc import Callable, Iterable, Iterator
from time import perf_counter
from typing import IO, TYPE_CHECKING, Any

from . import _write
from ._coordinator import Coordinator
from ._fetch import Fetch, first_stat, raise_failure, read_range, serve
from ._fileobj import close_handles, open_file
from ._keys import checked_user_key, is_reserved, unhashable, validate_user_key
from ._local import LOCAL_FAILURES, LocalTier
from ._log import lazy_logger
from ._policy import CachePolicy
from ._resilience import Outage, Refresher
from ._serializer import BytesSerializer, Serializer
from ._stats import (
    COALESCED,
    EVICTIONS,
    FROM_LOCAL,
    FROM_REMOTE,
    HITS,
    MISSES,
    REMOTE_READS,
    STALE_SERVED,
    Counters,
)
from ._store import EntryReader, EntryStat, Store
from .errors import CorruptEntryError, KeyNotFoundError, RemoteError, StoreClosedError
from .events import Event
from .events import dispatcher as _events

if TYPE_CHECKING:
    from ._ranged import Engine, PartialEntries

__all__ = ["CachedStore"]

log = lazy_logger("cached_stores_factory")
_MISSING: Any = object()


class CachedStore(Store, checks_own_keys=True):
    """A local store in front of a remote one, kept by a cache policy.

    It is itself a Store, so tiers nest: a cached store can be another one's remote.  One
    instance may be shared by any number of threads.  A hit takes only the counters' lock, for
    two additions.  A miss joins or starts the key's one fetch (see _fetch); a write or delete
    goes through _write.  What the engine knows about each key lives in its Coordinator.

    A local store that fails is a slow cache for reads: they go to the remote, the outage is
    logged once, and the local store is skipped for a back-off period.  A write it cannot
    mark fails before the remote changes (LocalStoreUnavailableError), unless the store was
    built with `availability=True` (docs/coherence.md says what that gives up).

    Keys under `.csf-partial/` are refused (InvalidKeyError): the local store keeps the blocks
    of ranged reads there.  After `close()` every call raises StoreClosedError.

    Args:
        local: The fast store that keeps copies.
        remote: The slow store that holds the data.
        policy: Which local copies are fresh and which must go; None keeps every copy.
        serializer: How the value API turns values into bytes; None stores bytes as is.
        availability: True lets writes go on while the local store is down (see
            docs/coherence.md for the weaker promise).
    """

    def __init__(
        self,
        local: Store,
        remote: Store,
        policy: CachePolicy | None = None,
        serializer: Serializer | None = None,
        *,
        availability: bool = False,
    ) -> None:
        self.local = local
        self.remote = remote
        self.policy = policy if policy is not None else CachePolicy()
        self.serializer = serializer if serializer is not None else BytesSerializer()
        self._counters = Counters()
        self._lock = threading.Lock()  # guards the set-up of `partials`
        self.coordinator = Coordinator()
        self.tier = LocalTier(
            local,
            self.policy,
            self.coordinator,
            self._evicted,
            availability=availability,
        )
        self.remote_outage = Outage("remote", remote)
        self._refresher = Refresher(self._refresh)
        self._partials: PartialEntries | None = None
        self._closed = False
        # What a hit calls, found once: the local store's open_read without its key check
        # (keys reach it checked by the stricter user-key rules), and the policy's hooks
        # only where it has its own.
        opener = type(local).open_read
        self._open_local: Callable[[str], EntryReader] = functools.partial(
            getattr(opener, "__wrapped__", opener), local
        )
        kind = type(self.policy)
        self._fresh_always = kind.is_fresh is CachePolicy.is_fresh
        self._on_hit: Callable[[str, EntryStat], None] | None = (
            None if kind.on_hit is CachePolicy.on_hit else self.policy.on_hit
        )
        self.policy.bind(local)

    @property
    def partials(self) -> PartialEntries:
        """Objects read in blocks (ranged reads), set up on first use: a cold start skips it."""
        if self._partials is None:
            from ._ranged import PartialEntries

            with self._lock:
                if self._partials is None:
                    self._partials = PartialEntries(_ranged_engine(self))
        return self._partials

    def __repr__(self) -> str:
        return (
            f"CachedStore(local={self.local!r}, remote={self.remote!r}, "
            f"policy={self.policy!r}, serializer={self.serializer!r})"
        )

    def checked_key(self, key: str) -> str:
        """The key, checked, from a store that is still open: every public call starts here."""
        if self._closed:
            raise StoreClosedError(f"{self!r} is closed")
        return validate_user_key(key)

    def stats(self) -> dict[str, int]:
        """hits, misses, coalesced, remote_reads, remote_writes, evictions, revalidated,
        stale_served, bytes_from_remote, bytes_from_local; and `unverified_reads` when the
        remote counts reads no checksum covered (S3Store)."""
        counts = self._counters.snapshot().as_dict()
        unverified = getattr(self.remote, "unverified_reads", None)
        if isinstance(unverified, int):
            counts["unverified_reads"] = unverified
        return counts

    def emit(self, kind: str, key: str, size: int | None = None, **details: Any) -> None:
        """Tell the event listeners, if any (cached_stores_factory.events)."""
        if _events.listeners:
            _events.emit(Event(kind, self, key, size, **details))

    def _evicted(self, key: str) -> None:
        self._counters.add(EVICTIONS)
        self.emit("eviction", key)

    def count(self, index: int, amount: int = 1) -> None:
        """Add to one of the counters (`_stats` names them)."""
        self._counters.add(index, amount)

    def count_fetch(self, size: int) -> None:
        self._counters.add(REMOTE_READS)
        self._counters.add(FROM_REMOTE, size)

    # -- reading --------------------------------------------------------------------------

    def open_read(self, key: str) -> EntryReader:
        """A fresh local entry with no remote call, else one fetch shared by concurrent readers."""
        # The hit path, with no call it can spare: one closed test, one cached key check,
        # one local open (its store's own key check skipped: this one is stricter), the
        # policy's calls unless it has none, one count.
        if self._closed:
            raise StoreClosedError(f"{self!r} is closed")
        try:
            key = checked_user_key(key)
        except TypeError:
            raise unhashable(key) from None
        entry = self._hit(key)
        return entry if entry is not None else self._miss(key)

    def open_fresh(self, key: str) -> EntryReader | None:
        """The local entry if it may be served now, counted; None (no remote call) if not.

        Fresh, or expired within the policy's `stale_while_revalidate` window (then a
        background refresh is queued).
        """
        return self._hit(self.checked_key(key))

    def _hit(self, key: str) -> EntryReader | None:
        started = perf_counter() if _events.listeners else 0.0  # nobody listens: one check
        tier = self.tier
        outage = tier.outage
        bypassed = self.coordinator.bypassed
        if (outage.until and outage.skipping()) or (bypassed and key in bypassed):
            return None
        try:
            entry = self._open_local(key)
        except KeyError:  # a KeyNotFoundError, or a store author's plain KeyError
            self.coordinator.forget(key)
            return None
        except LOCAL_FAILURES as exc:
            tier.failed(key, exc)
            return None
        if outage.until:
            outage.answered()
        stat = entry.stat
        if stat.modified is None:
            stat = tier.dated(key, stat)
        policy = self.policy
        if self._fresh_always or policy.is_fresh(key, stat):
            if self._on_hit is not None:
                self._on_hit(key, stat)
            counters = self._counters
            with counters.lock:
                counters.values[HITS] += 1
                counters.values[FROM_LOCAL] += stat.size
            if started:
                self.emit("hit", key, stat.size, seconds=perf_counter() - started)
            return entry
        window = policy.stale_while_revalidate
        if window and policy.expired_for(key, stat) <= window:
            self._counters.add(STALE_SERVED)
            self.emit("stale_served", key, stat.size)
            self._refresher.submit(key)
            return entry
        entry.close()
        return None

    def _miss(self, key: str) -> EntryReader:
        started = perf_counter() if _events.listeners else 0.0
        self._counters.add(MISSES)
        flight, leader = self.coordinator.join_fetch(key)
        if leader:
            Fetch(self, key, flight).run()
        else:
            self._counters.add(COALESCED)
            flight.done.wait()
        try:
            raise_failure(flight, leader=leader)
            served = serve(self.local, key, flight)
        finally:
            flight.release()
        if started:
            seconds = perf_counter() - started
            self.emit("miss" if leader else "coalesced", key, served.stat.size, seconds=seconds)
        return served

    def _refresh(self, key: str) -> None:
        """Fetch or revalidate `key` in the background, unless a fetch of it is running."""
        if self._closed:
            return
        flight = self.coordinator.lead_alone(key)
        if flight is None:
            return
        try:
            Fetch(self, key, flight).run()
            if flight.error is not None and not isinstance(flight.error, RemoteError):
                log.warning("refreshing %r in the background failed: %r", key, flight.error)
        finally:
            flight.release()

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The value under `key`, through the serializer; `default` if given and missing."""
        try:
            try:
                with self.open_read(key) as entry:
                    data = entry.read()
            except CorruptEntryError as exc:  # found while reading: drop it, fetch again
                self.tier.failed(key, exc)
                with self._miss(key) as entry:
                    data = entry.read()
        except KeyNotFoundError:
            if default is _MISSING:
                raise
            return default
        return self.serializer.loads(data)

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def stat(self, key: str) -> EntryStat:
        """The fresh local entry's stat, else a fresh partial entry's, else the remote's."""
        stat = self.tier.fresh_stat(self.checked_key(key))
        if stat is None:
            stat = self.partials.stat(key)
        return stat if stat is not None else self.remote.stat(key)

    def __contains__(self, key: object) -> bool:
        return self.tier.fresh_stat(self.checked_key(key)) is not None or key in self.remote  # type: ignore[arg-type]

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys of the remote: the local store holds only copies.

        A remote key under the reserved prefix (written by some other client) is left out:
        this store refuses it.
        """
        self.checked_key("k")
        return (key for key in self.remote.keys(prefix) if not is_reserved(key))

    # -- writing --------------------------------------------------------------------------

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        """Write through: drop and mark the local copy, write the remote, then store the copy.

        The local copy goes first, so no failure after the remote changed (a crash, a local
        store that is down or full) leaves an older copy to be served.  A failed remote
        write raises; reads then fetch the remote's unchanged version again.  A local store
        that can't be marked refuses the write first (LocalStoreUnavailableError).
        """
        return _write.write(self, self.checked_key(key), stream, etag)

    def put(self, key: str, value: Any) -> None:
        """Store `value` through the serializer, remote first."""
        self.put_stream(key, io.BytesIO(self.serializer.dumps(value)))

    def __setitem__(self, key: str, value: Any) -> None:
        self.put(key, value)

    def delete(self, key: str) -> bool:
        """Delete the local copy, then the remote object; True if either held the key."""
        return _write.delete(self, self.checked_key(key))

    def __delitem__(self, key: str) -> None:
        if not self.delete(key):
            raise KeyNotFoundError(key, "cached store")

    def invalidate(self, key: str) -> bool:
        """Drop the local copy (and any blocks of it) only; the next read fetches again.

        A fetch of the key in flight, in any process that fences with this local store,
        stores nothing.
        """
        key = self.checked_key(key)
        self.partials.forget(key)
        return self.tier.drop(key)

    def clear(self) -> int:
        """Drop every local copy; the remote is untouched.  Returns how many went.

        Every fence moves first, so a fetch in flight in any process sharing the local store
        stores nothing, even of a key that has no copy yet; a copy stored before the move is
        listed and dropped.
        """
        self.checked_key("k")
        self.coordinator.invalidated_all()
        self.local.move_fences()
        return self._drop_all(self.local.keys())

    def purge(self) -> int:
        """Drop every local copy the policy says is stale; return how many went."""
        self.checked_key("k")
        return self._drop_all(self.policy.expired())

    def _drop_all(self, keys: Iterable[str]) -> int:
        return sum(1 for key in list(keys) if self.tier.drop(key))

    # -- file objects ---------------------------------------------------------------------

    def open(
        self,
        key: str,
        mode: str = "r+b",
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> IO[Any]:
        """Open an entry as a file object, with Python's meaning of `mode`.

        Read-only binary modes return the local entry's own stream (on a miss, after the
        fetch).  Writing modes return a WriteHandle, committed whole by `close()` or a clean
        `with` exit and discarded by an exception leaving the `with` block or `discard()`.
        Text modes wrap either in an io.TextIOWrapper (UTF-8 unless `encoding` says otherwise).
        """
        if mode == "rb" and encoding is errors is newline is None:  # the common read: no parse
            try:
                return self.open_read(key).stream
            except KeyNotFoundError:
                raise _not_found(key) from None
        return open_file(self, key, mode, encoding=encoding, errors=errors, newline=newline)

    def close(self) -> None:
        """Commit this store's open handles, stop its threads, close the policy and both stores.

        Idempotent; every later call raises StoreClosedError.
        """
        if self._closed:
            return
        close_handles(self, "when its store closed")
        self._closed = True
        self._refresher.close()
        self.policy.close()
        self.local.close()
        self.remote.close()


def _ranged_engine(cached: CachedStore) -> Engine:
    """What ranged reads may do with `cached`, each answered by the part that knows it."""
    from ._ranged import Engine

    tier, local, policy = cached.tier, cached.local, cached.policy
    return Engine(
        usable=tier.usable,
        bypass=tier.bypass,
        fence=tier.fence,
        admits=policy.admits,
        is_fresh=policy.is_fresh,
        open_local=local.open_read,
        entry_stat=tier.entry_stat,
        put_local=local.put,
        keep=tier.keep,
        insert=tier.insert,
        discard=tier.discard,
        first_stat=functools.partial(first_stat, cached),
        read_range=functools.partial(read_range, cached),
        read_whole=cached.open_read,
    )


def _not_found(key: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, "No such key in the cached store", key)
