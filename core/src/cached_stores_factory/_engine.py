"""The cached store: read-through with single-flight, write-through, file objects."""

from __future__ import annotations

import contextlib
import copy
import errno
import io
import shutil
import threading
from collections.abc import Iterable, Iterator
from time import perf_counter
from typing import IO, TYPE_CHECKING, Any, Final, NamedTuple, cast

from ._fileobj import TextHandle, WriteHandle, close_handles, parse_mode
from ._keys import is_reserved, validate_user_key
from ._log import lazy_logger
from ._policy import CachePolicy
from ._resilience import Outage, Refresher
from ._serializer import BytesSerializer, Serializer
from ._spool import SharedSpool, new_spool
from ._store import EntryReader, EntryStat, Store
from .errors import CorruptEntryError, KeyNotFoundError, RemoteError, StoreError
from .events import Event
from .events import dispatcher as _events

if TYPE_CHECKING:
    from ._ranged import PartialEntries

__all__ = ["CacheStats", "CachedStore"]

log = lazy_logger("cached_stores_factory")
_MISSING: Any = object()


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


class _Counters:
    """The CacheStats counters behind one lock.

    The lock is held for a few additions, never across I/O (its cost on a hit is in
    docs/performance.md), and the counts stay exact without the GIL.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = [0] * len(_FIELDS)

    def add(self, index: int, amount: int = 1) -> None:
        with self._lock:
            self._values[index] += amount

    def hit(self, size: int) -> None:
        with self._lock:
            self._values[HITS] += 1
            self._values[FROM_LOCAL] += size

    def snapshot(self) -> CacheStats:
        with self._lock:
            return CacheStats(*self._values)


class _Flight:
    """One fetch of one key, shared by every reader that asked for it meanwhile.

    Its readers are served from the local entry it stored, or from `spool` when the bytes
    are not kept.  `pin` is that local entry as the fetch opened it: a reader that finds the
    entry gone (evicted by a concurrent insert) is served from it, so an eviction never
    costs a second fetch.  The last reader takes the pin itself, or closes it.
    """

    __slots__ = ("done", "error", "lock", "pin", "readers", "spool", "stale", "stat")

    def __init__(self, *, stale: bool) -> None:
        self.done = threading.Event()
        self.lock = threading.Lock()  # guards pin, spool and readers once the fetch is done
        self.error: BaseException | None = None
        self.pin: EntryReader | None = None
        self.spool: SharedSpool | None = None
        self.stat: EntryStat | None = None  # the spool's
        self.stale = stale  # a write or delete overlapped this fetch: store nothing locally
        self.readers = 1  # not served yet; final once the fetch is done

    def serve_unkept(self, stream: IO[bytes], stat: EntryStat) -> None:
        self.spool = SharedSpool.fill(stream)
        self.stat = stat

    def take_pin(self) -> EntryReader | None:
        """The pinned entry, to the last reader still waiting to be served."""
        with self.lock:
            pin = self.pin if self.readers == 1 else None
            if pin is not None:
                self.pin = None
            return pin

    def spool_pin(self) -> None:
        """Serve the pinned entry from a spool from now on: its local copy is gone."""
        with self.lock:
            if self.spool is None:
                assert self.pin is not None
                self.spool = SharedSpool.of(self.pin.stream, self.pin.stat.size)
                self.stat = self.pin.stat
                self.pin.close()
                self.pin = None

    def release(self) -> None:
        """One reader is served (or failed); the last one closes a pin nobody took."""
        with self.lock:
            self.readers -= 1
            pin = self.pin if not self.readers else None
            if pin is not None:
                self.pin = None
        if pin is not None:
            pin.close()


class _Mutation:
    """Writes and deletes of one key in progress; `contended` once two overlapped."""

    __slots__ = ("contended", "running")

    def __init__(self) -> None:
        self.running = 1
        self.contended = False


_LOCAL_FAILURES = (StoreError, OSError)  # a local store that is down, not a missing entry


class CachedStore(Store):
    """A local store in front of a remote one, kept by a cache policy.

    It is itself a Store, so tiers nest: a cached store can be another one's remote.  One
    instance may be shared by any number of threads.  A hit takes only the counters' lock, for
    two additions.  A miss takes a short lock to join or start the key's fetch, never held
    across I/O, so readers of other keys never wait for it.

    A local store that fails is a slow cache, never an error: reads and writes go to the
    remote, the outage is logged once, and the local store is skipped for a back-off period,
    then tried again.  Keys whose local copy could not be dropped when the remote changed are
    bypassed until it is.

    Keys under `.csf-partial/` are refused (InvalidKeyError): the local store keeps the blocks
    of ranged reads there.
    """

    def __init__(
        self,
        local: Store,
        remote: Store,
        policy: CachePolicy | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        self.local = local
        self.remote = remote
        self.policy = policy if policy is not None else CachePolicy()
        self.serializer = serializer if serializer is not None else BytesSerializer()
        self._counters = _Counters()
        self._lock = threading.Lock()  # guards the two dicts below; never held across I/O
        self._flights: dict[str, _Flight] = {}
        self._mutations: dict[str, _Mutation] = {}
        # When each entry this engine stored reached the local store, for stores that can't
        # say (their stat reports `modified=None`): an entry is never taken for younger.
        self._stored_at: dict[str, float] = {}
        # Keys whose local copy may be older than the remote (its drop failed): bypassed.
        self._unsynced: set[str] = set()
        self._local_outage = Outage("local", local)
        self._remote_outage = Outage("remote", remote)
        self._refresher = Refresher(self._refresh)
        self._partials: PartialEntries | None = None
        self.policy.bind(local)

    @property
    def partials(self) -> PartialEntries:
        """Objects read in blocks (ranged reads), set up on first use: a cold start skips it."""
        if self._partials is None:
            from ._ranged import PartialEntries

            with self._lock:
                if self._partials is None:
                    self._partials = PartialEntries(self)
        return self._partials

    def __repr__(self) -> str:
        return (
            f"CachedStore(local={self.local!r}, remote={self.remote!r}, "
            f"policy={self.policy!r}, serializer={self.serializer!r})"
        )

    def _count(self, index: int, amount: int = 1) -> None:
        self._counters.add(index, amount)

    def _emit(self, kind: str, key: str, size: int | None = None, **details: Any) -> None:
        """Tell the event listeners, if any (cached_stores_factory.events)."""
        if _events.listeners:
            _events.emit(Event(kind, self, key, size, **details))

    def stats(self) -> dict[str, int]:
        """hits, misses, coalesced, remote_reads, remote_writes, evictions, revalidated,
        stale_served, bytes_from_remote, bytes_from_local."""
        return self._counters.snapshot().as_dict()

    # -- reading --------------------------------------------------------------------------

    def open_read(self, key: str) -> EntryReader:
        """A fresh local entry with no remote call, else one fetch shared by concurrent readers."""
        return self._read(key)

    def _read(self, key: str) -> EntryReader:
        entry = self.open_fresh(key)
        return entry if entry is not None else self._miss(key)

    def open_fresh(self, key: str) -> EntryReader | None:
        """The local entry if it may be served now, counted; None (no remote call) if not.

        Fresh, or expired within the policy's `stale_while_revalidate` window (then a
        background refresh is queued).
        """
        # The hit path: one cached key check, one local open, two policy calls, one count.
        # Every key from the user passes validate_user_key on its way in: here, or in
        # _fresh_stat, _mutation, invalidate or open (for writing).
        key = validate_user_key(key)
        started = perf_counter() if _events.listeners else 0.0  # nobody listens: one check
        outage = self._local_outage
        if (outage.until and outage.skipping()) or (self._unsynced and key in self._unsynced):
            return None
        try:
            entry = self.local.open_read(key)
        except KeyNotFoundError:
            return None
        except _LOCAL_FAILURES as exc:
            self._local_failed(key, exc)
            return None
        if outage.until:
            outage.answered()
        stat = entry.stat
        if stat.modified is None:
            stat = self._with_stored_time(key, stat)
        if self.policy.is_fresh(key, stat):
            self.policy.on_hit(key, stat)
            self._counters.hit(stat.size)
            if started:
                self._emit("hit", key, stat.size, seconds=perf_counter() - started)
            return entry
        window = self.policy.stale_while_revalidate
        if window and self.policy.expired_for(key, stat) <= window:
            self._count(STALE_SERVED)
            self._emit("stale_served", key, stat.size)
            self._refresher.submit(key)
            return entry
        entry.close()
        return None

    def _with_stored_time(self, key: str, stat: EntryStat) -> EntryStat:
        stored = self._stored_at.get(key)
        return stat if stored is None else stat._replace(modified=stored)

    def _miss(self, key: str) -> EntryReader:
        started = perf_counter() if _events.listeners else 0.0
        self._count(MISSES)
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight(stale=key in self._mutations)
            else:
                flight.readers += 1
        if leader:
            self._lead(key, flight)
        else:
            self._count(COALESCED)
            flight.done.wait()
        try:
            if flight.error is not None:
                if leader:
                    raise flight.error
                raise _own_copy(flight.error) from flight.error
            served = self._serve(key, flight)
        finally:
            flight.release()
        if started:
            seconds = perf_counter() - started
            self._emit("miss" if leader else "coalesced", key, served.stat.size, seconds=seconds)
        return served

    def _refresh(self, key: str) -> None:
        """Fetch or revalidate `key` in the background, unless a fetch of it is running."""
        with self._lock:
            if key in self._flights:
                return
            flight = self._flights[key] = _Flight(stale=key in self._mutations)
        try:
            self._lead(key, flight)
        finally:
            flight.release()

    def _lead(self, key: str, flight: _Flight) -> None:
        try:
            self._fetch(key, flight)
        except Exception as exc:
            flight.error = exc
        except BaseException:  # KeyboardInterrupt and the like stay with the leader
            flight.error = StoreError(f"the fetch of {key!r} was interrupted")
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def _fetch(self, key: str, flight: _Flight) -> None:
        """Serve `key` to the flight's readers: a fresh copy, a revalidated one, or the remote's."""
        expired = None if flight.stale else self._local_entry(key, flight)
        if expired is not None and self.policy.is_fresh(key, expired.stat):
            flight.pin = expired  # another reader's fetch stored it meanwhile
            return
        if flight.stale:
            self._fetch_remote(key, flight, expired)
            return
        with self._leased(key) as held:
            if held:  # another process may have fetched it while this one waited
                if expired is not None:
                    expired.close()
                expired = self._local_entry(key, flight)
                if expired is not None and self.policy.is_fresh(key, expired.stat):
                    flight.pin = expired
                    return
            self._fetch_remote(key, flight, expired)

    @contextlib.contextmanager
    def _leased(self, key: str) -> Iterator[bool]:
        """Hold the key's cross-process lease, if the local store or the policy offers one.

        Fetches, writes and deletes of one key then run one at a time across every process
        that shares the local store: a cold key is fetched once, and a fetch in flight never
        stores over a write or delete made elsewhere.  Yields whether a lease is held; one
        that cannot be taken (its server is down) is logged and gone without.
        """
        lease = self.local.lease(key)
        if lease is None:
            lease = self.policy.lease(key)
        held = False
        with contextlib.ExitStack() as stack:
            if lease is not None:
                try:
                    stack.enter_context(lease)
                    held = True
                except _LOCAL_FAILURES:
                    log.warning("no lease on %r; going on without one", key, exc_info=True)
            yield held

    def _fetch_remote(self, key: str, flight: _Flight, expired: EntryReader | None) -> None:
        """Ask the remote: revalidate the expired copy, or fetch and keep the object."""
        started = perf_counter() if expired is not None and _events.listeners else 0.0
        try:
            fetched = self._remote_read(key, expired)
        except RemoteError as exc:
            if expired is not None and self._may_serve_stale(key, expired.stat):
                log.debug("serving %r stale: %s", key, exc)
                self._count(STALE_SERVED)
                self._emit("stale_served", key, expired.stat.size, error=exc)
                flight.pin = expired
                return
            if expired is not None:
                expired.close()
            raise
        except KeyNotFoundError:
            if expired is not None:  # gone from the remote: so must the copy be
                expired.close()
                self._drop_quietly(key)
            raise
        if started:
            size = None if fetched is None else fetched.stat.size
            seconds = perf_counter() - started
            self._emit("revalidated" if fetched is None else "changed", key, size, seconds=seconds)
        if fetched is None:
            assert expired is not None
            flight.pin = self._revalidated(key, expired)
            return
        if expired is not None:
            expired.close()
        with fetched:
            self._keep(key, flight, fetched)

    def _local_entry(self, key: str, flight: _Flight) -> EntryReader | None:
        """The local entry, aged, or None; a flight that must not touch the local store is stale."""
        if self._local_outage.skipping() or not self._settled(key):
            flight.stale = True
            return None
        try:
            entry = self.local.open_read(key)
        except KeyNotFoundError:
            return None
        except CorruptEntryError as exc:
            self._drop_corrupt(key, exc)
            return None
        except _LOCAL_FAILURES as exc:
            self._local_outage.failed(exc)
            flight.stale = True
            return None
        self._local_outage.answered()
        if entry.stat.modified is None:
            return EntryReader(entry.stream, self._with_stored_time(key, entry.stat))
        return entry

    def _remote_read(self, key: str, expired: EntryReader | None) -> EntryReader | None:
        """The remote's entry, or None if it still has the expired copy's version."""
        etag = None if expired is None else expired.stat.etag or self._local_etag(key)
        try:
            if etag is not None:
                entry = self.remote.open_read_if_changed(key, etag)
            else:
                entry = self.remote.open_read(key)
        except KeyNotFoundError:
            raise
        except RemoteError as exc:
            self._remote_outage.failed(exc)
            self._emit("remote_error", key, error=exc)
            raise
        except _LOCAL_FAILURES as exc:
            self._remote_outage.failed(exc)
            error = RemoteError(f"reading {key!r} from the remote {self.remote!r}: {exc}")
            self._emit("remote_error", key, error=error)
            raise error from exc
        self._remote_outage.answered()
        if entry is not None:
            self._count_fetch(entry.stat.size)
            self._emit("fetch", key, entry.stat.size)
        return entry

    def _count_fetch(self, size: int) -> None:
        self._count(REMOTE_READS)
        self._count(FROM_REMOTE, size)

    def _local_etag(self, key: str) -> str | None:
        """The entity tag recorded with the local copy (a hit's stat may leave it out)."""
        try:
            return self.local.stat(key).etag
        except (KeyNotFoundError, *_LOCAL_FAILURES):
            return None

    def _revalidated(self, key: str, expired: EntryReader) -> EntryReader:
        """The remote still has this version: stamp the copy fresh, and serve it."""
        self._count(REVALIDATED)
        try:
            stat = self.local.touch(key)
        except (KeyNotFoundError, *_LOCAL_FAILURES):
            log.debug("re-stamping %r failed; it is revalidated again next time", key)
            return expired
        if stat.modified is not None:
            self._stored_at[key] = stat.modified
        self.policy.on_hit(key, stat)
        return EntryReader(expired.stream, stat)

    def _may_serve_stale(self, key: str, stat: EntryStat) -> bool:
        window = self.policy.stale_if_error
        return bool(window) and self.policy.expired_for(key, stat) <= window

    def _keep(self, key: str, flight: _Flight, fetched: EntryReader) -> None:
        """Store what the remote sent locally, for the flight's readers and later ones."""
        stat = fetched.stat
        if flight.stale or not self.policy.admits(stat.size):
            flight.serve_unkept(fetched.stream, stat)
            return
        source = _RemoteStream(fetched.stream)
        try:
            local_stat = self.local.put_stream(key, cast(IO[bytes], source), etag=stat.etag)
            flight.pin = self.local.open_read(key)
        except Exception as exc:
            if source.error is not None:  # the remote's body broke off: not the cache's fault
                self._remote_outage.failed(source.error)
                if isinstance(source.error, RemoteError):
                    raise source.error from None
                raise RemoteError(
                    f"reading {key!r} from the remote {self.remote!r}: {source.error}"
                ) from source.error
            # A cache that cannot hold the object (full disk, a Redis value limit) must not
            # fail the read: fetch it again, for the waiting readers only.
            log.warning("caching %r locally failed (%s); serving it uncached", key, exc)
            if isinstance(exc, _LOCAL_FAILURES) and not isinstance(exc, CorruptEntryError):
                self._local_outage.failed(exc)
            self._drop_quietly(key, tell_policy=False)
            refetched = self._remote_read(key, None)
            assert refetched is not None
            with refetched:
                flight.serve_unkept(refetched.stream, refetched.stat)
            return
        self._inserted(key, local_stat)
        if flight.stale:  # a write or delete began meanwhile: its version may differ
            self._drop_quietly(key)

    def _inserted(self, key: str, stat: EntryStat) -> None:
        """The local store holds a new copy: tell the policy, and evict what it says."""
        self._stored_at[key] = stat.modified if stat.modified is not None else 0.0
        try:
            victims = self.policy.on_insert(key, stat)
        except Exception:
            # The policy can't track the copy, so no copy may stay (readers get the pin).
            log.exception("the policy failed on inserting %r; its local copy is dropped", key)
            self._drop_quietly(key, tell_policy=False)
            return
        self._evict(victims)

    def _evict(self, victims: Iterable[str]) -> None:
        """Delete the copies the policy gave up; one that can't go is bypassed until it does."""
        for victim in victims:
            try:
                removed = self.local.delete(victim)
            except _LOCAL_FAILURES as exc:
                self._local_outage.failed(exc)
                self._unsynced.add(victim)  # it goes before it is served again
            else:
                self._stored_at.pop(victim, None)
                if removed:
                    self._count(EVICTIONS)
                    self._emit("eviction", victim)
            self.policy.on_delete(victim)

    def _serve(self, key: str, flight: _Flight) -> EntryReader:
        if flight.spool is None:
            pin = flight.take_pin()
            if pin is not None:
                return pin
            try:
                return self.local.open_read(key)
            except (KeyNotFoundError, *_LOCAL_FAILURES):
                flight.spool_pin()
        assert flight.spool is not None and flight.stat is not None
        return EntryReader(flight.spool.open(), flight.stat)

    def _fresh_stat(self, key: str) -> EntryStat | None:
        """The local copy's stat if it is fresh; None if missing, stale or unavailable."""
        key = validate_user_key(key)
        if self._local_outage.skipping() or not self._settled(key):
            return None
        try:
            stat = self.local.stat(key)
        except KeyNotFoundError:
            return None
        except _LOCAL_FAILURES as exc:
            self._local_failed(key, exc)
            return None
        self._local_outage.answered()
        if stat.modified is None:
            stat = self._with_stored_time(key, stat)
        return stat if self.policy.is_fresh(key, stat) else None

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The value under `key`, through the serializer; `default` if given and missing."""
        try:
            try:
                with self._read(key) as entry:
                    data = entry.read()
            except CorruptEntryError as exc:  # found while reading: drop it, fetch again
                self._drop_corrupt(key, exc)
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
        stat = self._fresh_stat(key)
        if stat is None:
            stat = self.partials.stat(key)
        return stat if stat is not None else self.remote.stat(key)

    def __contains__(self, key: object) -> bool:
        return self._fresh_stat(key) is not None or key in self.remote  # type: ignore[arg-type]

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys of the remote: the local store holds only copies.

        A remote key under the reserved prefix (written by some other client) is left out:
        this store refuses it.
        """
        return (key for key in self.remote.keys(prefix) if not is_reserved(key))

    # -- writing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _mutation(self, key: str) -> Iterator[_Mutation]:
        """Mark `key` as being written or deleted while the block runs.

        A fetch of the key that overlaps it is stale: it serves its readers but stores
        nothing locally.  Two writes of one key that overlap leave no local copy, because
        which one the remote kept is unknown here.
        """
        key = validate_user_key(key)
        with self._lock:
            mutation = self._mutations.get(key)
            if mutation is None:
                mutation = self._mutations[key] = _Mutation()
            else:
                mutation.running += 1
                mutation.contended = True
            flight = self._flights.get(key)
            if flight is not None:
                flight.stale = True
        self.partials.forget(key)
        try:
            yield mutation
        finally:
            with self._lock:
                mutation.running -= 1
                if not mutation.running:
                    del self._mutations[key]

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        """Write through: drop the local copy, write the remote, then the local copy and policy.

        The local copy goes first, so no failure after the remote changed (a crash, a local
        store that is down or full) leaves an older copy to be served.  A failed remote
        write raises; reads then fetch the remote's unchanged version again.  A failed local
        write after a good remote one is logged, not raised: the data is safe in the remote.
        """
        if not stream.seekable():
            with new_spool() as spool:
                shutil.copyfileobj(stream, spool)
                spool.seek(0)
                return self.put_stream(key, spool, etag=etag)
        start = stream.tell()
        with self._mutation(key) as mutation, self._leased(key):
            cacheable = self._drop_before_change(key) is not None
            started = perf_counter() if _events.listeners else 0.0
            remote_stat = self.remote.put_stream(key, stream, etag=etag)
            self._count(REMOTE_WRITES)
            if started:
                self._emit("write", key, remote_stat.size, seconds=perf_counter() - started)
            if not cacheable or not self.policy.admits(remote_stat.size):
                return remote_stat
            stream.seek(start)
            try:
                local_stat = self.local.put_stream(key, stream, etag=remote_stat.etag)
            except Exception as exc:
                log.warning("caching %r locally failed (%s); the remote holds it", key, exc)
                if isinstance(exc, _LOCAL_FAILURES):
                    self._local_outage.failed(exc)
                self._drop_quietly(key, tell_policy=False)
                return remote_stat
            self._inserted(key, local_stat)
            if mutation.contended:
                self._drop_quietly(key)
        return remote_stat

    def put(self, key: str, value: Any) -> None:
        """Store `value` through the serializer, remote first."""
        self.put_stream(key, io.BytesIO(self.serializer.dumps(value)))

    def __setitem__(self, key: str, value: Any) -> None:
        self.put(key, value)

    def delete(self, key: str) -> bool:
        """Delete the local copy, then the remote object; True if either held the key."""
        with self._mutation(key), self._leased(key):
            removed_local = self._drop_before_change(key)
            return self.remote.delete(key) or bool(removed_local)

    def __delitem__(self, key: str) -> None:
        if not self.delete(key):
            raise KeyNotFoundError(key, "cached store")

    def invalidate(self, key: str) -> bool:
        """Drop the local copy (and any blocks of it) only; the next read fetches again."""
        key = validate_user_key(key)
        self.partials.forget(key)
        return self._drop_local(key)

    def clear(self) -> int:
        """Drop every local copy; the remote is untouched.  Returns how many went."""
        return self._drop_all(self.local.keys())

    def purge(self) -> int:
        """Drop every local copy the policy says is stale; return how many went."""
        return self._drop_all(self.policy.expired())

    def _drop_all(self, keys: Iterable[str]) -> int:
        return sum(1 for key in list(keys) if self._drop_local(key))

    def _drop_local(self, key: str) -> bool:
        """Drop the local copy and tell the policy; the local store's errors raise."""
        self._stored_at.pop(key, None)
        removed = self.local.delete(key)
        self._unsynced.discard(key)
        self.policy.on_delete(key)
        return removed

    def _drop_before_change(self, key: str) -> bool | None:
        """Drop the local copy before the remote changes; whether there was one.

        None when the local store can't be used for `key` now: the copy could not be
        dropped, so the key is bypassed until it is.
        """
        if self._local_outage.skipping():
            self._unsynced.add(key)
            return None
        try:
            removed = self._drop_local(key)
        except _LOCAL_FAILURES as exc:
            self._local_outage.failed(exc)
            self._unsynced.add(key)
            return None
        self._local_outage.answered()
        return removed

    def _drop_quietly(self, key: str, *, tell_policy: bool = True) -> None:
        """Drop the local copy; if that fails, bypass the key until it can be dropped."""
        self._stored_at.pop(key, None)
        try:
            self.local.delete(key)
        except _LOCAL_FAILURES as exc:
            self._local_outage.failed(exc)
            self._unsynced.add(key)
        if tell_policy:
            self.policy.on_delete(key)

    def _local_failed(self, key: str, error: Exception) -> None:
        """A local read failed: a corrupt copy goes; any other failure starts an outage."""
        if isinstance(error, CorruptEntryError):
            self._drop_corrupt(key, error)
        else:
            self._local_outage.failed(error)

    def _drop_corrupt(self, key: str, error: CorruptEntryError) -> None:
        log.warning("dropping a corrupt local copy: %s", error)
        self._drop_quietly(key)

    def local_usable(self, key: str) -> bool:
        """Whether the local store is in use now (no outage) for `key` (not bypassed)."""
        return not self._local_outage.skipping() and not (self._unsynced and key in self._unsynced)

    def bypass(self, key: str, error: Exception | None = None) -> None:
        """Serve `key` from the remote until its local copies can be dropped."""
        if error is not None:
            self._local_outage.failed(error)
        self._unsynced.add(key)

    def _settled(self, key: str) -> bool:
        """Whether the local store may serve `key`: its copy is not possibly outdated."""
        if not self._unsynced or key not in self._unsynced:
            return True
        try:
            self._drop_local(key)
        except _LOCAL_FAILURES as exc:
            self._local_outage.failed(exc)
            return False
        self.partials.forget(key)  # bypasses the key again if its blocks can't go
        return key not in self._unsynced

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
        parsed = parse_mode(mode)
        if parsed.binary and (encoding is not None or errors is not None or newline is not None):
            raise ValueError("binary mode doesn't take an encoding, errors or newline argument")
        binary: IO[bytes]
        if not parsed.writing:
            try:
                binary = self._read(key).stream
            except KeyNotFoundError:
                raise FileNotFoundError(
                    errno.ENOENT, "No such key in the cached store", key
                ) from None
        else:
            binary = WriteHandle.open(self, validate_user_key(key), parsed)  # type: ignore[assignment]
        if parsed.binary:
            return binary
        text = (TextHandle if parsed.writing else io.TextIOWrapper)(
            binary,
            encoding=encoding or "utf-8",
            errors=errors,
            newline=newline,
            write_through=True,  # nothing waits in the wrapper when a commit runs
        )
        text.mode = mode  # type: ignore[misc]
        return text

    def close(self) -> None:
        """Commit this store's open handles, then close the policy and both stores."""
        close_handles(self, "when its store closed")
        self.policy.close()
        self.local.close()
        self.remote.close()


class _RemoteStream(io.RawIOBase):
    """The remote's body as the local store reads it, keeping the error if reading it failed.

    So a body that breaks off mid-copy is told apart from a local store that fails.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            return self._stream.read(-1 if size is None else size)
        except Exception as exc:
            self.error = exc
            raise

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        with memoryview(buffer) as view, view.cast("B") as target:
            data = self.read(len(target))
            target[: len(data)] = data
        return len(data)


def _own_copy(error: BaseException) -> BaseException:
    """A copy of a fetch's error for one waiting reader, so tracebacks don't pile up."""
    try:
        mine = copy.copy(error)
    except Exception:
        return StoreError(str(error))
    mine.__traceback__ = None
    return mine
