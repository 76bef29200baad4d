"""The cached store: read-through with single-flight, write-through, file objects."""

from __future__ import annotations

import contextlib
import copy
import errno
import io
import logging
import shutil
import threading
from collections.abc import Iterable, Iterator
from typing import IO, Any, Final

import attrs

from ._fileobj import TextHandle, WriteHandle, close_handles, parse_mode
from ._keys import validate_key
from ._policy import CachePolicy
from ._ranged import PartialEntries
from ._serializer import BytesSerializer, Serializer
from ._spool import SharedSpool, new_spool
from ._store import EntryReader, EntryStat, Store
from .errors import KeyNotFoundError, StoreError

__all__ = ["CacheStats", "CachedStore"]

log = logging.getLogger("cached_stores_factory")
_MISSING: Any = object()


@attrs.frozen
class CacheStats:
    """Counters since the cached store was built.  `as_dict()` is what `stats()` returns.

    `hits`: reads served by a fresh local entry; `misses`: reads that were not, including
    readers that waited on another thread's fetch (`coalesced` counts those alone);
    `remote_reads`/`remote_writes`: objects fetched from and written to the remote;
    `evictions`: local entries the policy removed; `bytes_from_remote`: sizes of the fetched
    objects; `bytes_from_local`: sizes of the entries served on hits.
    """

    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    remote_reads: int = 0
    remote_writes: int = 0
    evictions: int = 0
    bytes_from_remote: int = 0
    bytes_from_local: int = 0

    def as_dict(self) -> dict[str, int]:
        return attrs.asdict(self)


_FIELDS: Final = tuple(field.name for field in attrs.fields(CacheStats))
# Slots in a thread's list of counts, found by name so CacheStats may change its order.
HITS, MISSES, COALESCED, REMOTE_READS, REMOTE_WRITES, EVICTIONS, FROM_REMOTE, FROM_LOCAL = (
    _FIELDS.index(name)
    for name in (
        "hits",
        "misses",
        "coalesced",
        "remote_reads",
        "remote_writes",
        "evictions",
        "bytes_from_remote",
        "bytes_from_local",
    )
)


class _Counters:
    """The CacheStats counters behind one lock.

    The lock is held for a few additions, never across I/O: about 0.1 us on a hit that costs
    10 us or more, and correct without the GIL.
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


@attrs.define
class _Mutation:
    """Writes and deletes of one key in progress; `contended` once two overlapped."""

    running: int = 1
    contended: bool = False


_LOCAL_FAILURES = (StoreError, OSError)  # a local store that is down, not a missing entry


class CachedStore(Store):
    """A local store in front of a remote one, kept by a cache policy.

    It is itself a Store, so tiers nest: a cached store can be another one's remote.  One
    instance may be shared by any number of threads.  A hit takes only the counters' lock, for
    two additions.  A miss takes a short lock to join or start the key's fetch, never held
    across I/O, so readers of other keys never wait for it.
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
        self.partials = PartialEntries(self)  # objects read in blocks (ranged reads)
        self.policy.bind(local)

    def __repr__(self) -> str:
        return (
            f"CachedStore(local={self.local!r}, remote={self.remote!r}, "
            f"policy={self.policy!r}, serializer={self.serializer!r})"
        )

    def _count(self, index: int, amount: int = 1) -> None:
        self._counters.add(index, amount)

    def stats(self) -> dict[str, int]:
        """hits, misses, coalesced, remote_reads, remote_writes, evictions, bytes_from_*."""
        return self._counters.snapshot().as_dict()

    # -- reading --------------------------------------------------------------------------

    def open_read(self, key: str) -> EntryReader:
        """A fresh local entry with no remote call, else one fetch shared by concurrent readers."""
        return self._read(key)

    def _read(self, key: str) -> EntryReader:
        entry = self.open_fresh(key)
        return entry if entry is not None else self._miss(key)

    def open_fresh(self, key: str) -> EntryReader | None:
        """The fresh local entry, served and counted as a hit; None (no remote call) if none."""
        # The hit path: one local open (which validates the key), two policy calls, one count.
        try:
            entry = self.local.open_read(key)
        except KeyNotFoundError:
            return None
        except _LOCAL_FAILURES:
            return None  # a miss; the fetch logs it and serves the object uncached
        stat = entry.stat
        if stat.modified is None:
            stat = self._with_stored_time(key, stat)
        if self.policy.is_fresh(key, stat):
            self.policy.on_hit(key, stat)
            self._counters.hit(stat.size)
            return entry
        entry.close()
        return None

    def _with_stored_time(self, key: str, stat: EntryStat) -> EntryStat:
        stored = self._stored_at.get(key)
        return stat if stored is None else attrs.evolve(stat, modified=stored)

    def _miss(self, key: str) -> EntryReader:
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
            return self._serve(key, flight)
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
        try:
            flight.pin = self._fresh_entry(key)
        except _LOCAL_FAILURES:
            # A cache that is down (Redis gone, a disk error) must not take the data with it.
            log.warning("the local store failed; serving %r uncached", key, exc_info=True)
            flight.stale = True
        if flight.pin is not None:
            return  # another reader's fetch stored it between our miss and our turn
        if flight.stale:
            self._fetch_remote(key, flight)
            return
        with self._leased(key) as held:
            if held:  # another process may have fetched it while this one waited
                with contextlib.suppress(*_LOCAL_FAILURES):
                    flight.pin = self._fresh_entry(key)
            if flight.pin is None:
                self._fetch_remote(key, flight)

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

    def _fetch_remote(self, key: str, flight: _Flight) -> None:
        with self._remote_entry(key) as remote_entry:
            stat = remote_entry.stat
            if flight.stale or not self.policy.admits(stat.size):
                flight.serve_unkept(remote_entry.stream, stat)
                return
            try:
                local_stat = self.local.put_stream(key, remote_entry.stream, etag=stat.etag)
                flight.pin = self.local.open_read(key)
            except Exception:
                # A cache that cannot hold the object (full disk, a Redis value limit) must
                # not fail the read: fetch it again, for the waiting readers only.
                log.warning("caching %r locally failed; serving it uncached", key, exc_info=True)
                with contextlib.suppress(Exception):
                    self._forget_local(key)
                local_stat = None
        if local_stat is None:
            with self._remote_entry(key) as remote_entry:
                flight.serve_unkept(remote_entry.stream, remote_entry.stat)
            return
        self._stored_at[key] = local_stat.modified if local_stat.modified is not None else 0.0
        try:
            victims = self.policy.on_insert(key, local_stat)
        except Exception:
            # The policy can't track the copy, so no copy may stay: readers get the pin.
            log.exception("the policy failed on inserting %r; its local copy is dropped", key)
            self._forget_local(key)
            return
        self._evict(victims)
        if flight.stale and key not in victims:
            self._drop_local(key)

    def _remote_entry(self, key: str) -> EntryReader:
        entry = self.remote.open_read(key)
        self._count_fetch(entry.stat.size)
        return entry

    def _count_fetch(self, size: int) -> None:
        self._count(REMOTE_READS)
        self._count(FROM_REMOTE, size)

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

    def _fresh_entry(self, key: str) -> EntryReader | None:
        """The local entry opened, if it is there and fresh."""
        try:
            entry = self.local.open_read(key)
        except KeyNotFoundError:
            return None
        stat = entry.stat
        if stat.modified is None:
            stat = self._with_stored_time(key, stat)
        if self.policy.is_fresh(key, stat):
            return entry
        entry.close()
        return None

    def _fresh_stat(self, key: str) -> EntryStat | None:
        try:
            stat = self.local.stat(key)
        except KeyNotFoundError:
            return None
        if stat.modified is None:
            stat = self._with_stored_time(key, stat)
        return stat if self.policy.is_fresh(key, stat) else None

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The value under `key`, through the serializer; `default` if given and missing."""
        try:
            with self._read(key) as entry:
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
        """Keys of the remote: the local store holds only copies."""
        return self.remote.keys(prefix)

    # -- writing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _mutation(self, key: str) -> Iterator[_Mutation]:
        """Mark `key` as being written or deleted while the block runs.

        A fetch of the key that overlaps it is stale: it serves its readers but stores
        nothing locally.  Two writes of one key that overlap leave no local copy, because
        which one the remote kept is unknown here.
        """
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
        """Write through: remote first, then local, then the policy.

        A failed remote write raises and leaves the local store as it was.  A failed local
        write after a good remote one drops the local copy (so it cannot be stale) and is
        logged, not raised: the data is safe in the remote.
        """
        if not stream.seekable():
            with new_spool() as spool:
                shutil.copyfileobj(stream, spool)
                spool.seek(0)
                return self.put_stream(key, spool, etag=etag)
        start = stream.tell()
        with self._mutation(key) as mutation, self._leased(key):
            remote_stat = self.remote.put_stream(key, stream, etag=etag)
            self._count(REMOTE_WRITES)
            if not self.policy.admits(remote_stat.size):
                self._drop_local(key)
                return remote_stat
            stream.seek(start)
            try:
                local_stat = self.local.put_stream(key, stream, etag=remote_stat.etag)
            except Exception:
                log.warning("caching %r locally failed; the remote holds it", key, exc_info=True)
                self._drop_local(key)
                return remote_stat
            self._stored_at[key] = local_stat.modified if local_stat.modified is not None else 0.0
            try:
                victims = self.policy.on_insert(key, local_stat)
            except Exception:
                log.exception("the policy failed on inserting %r; its local copy is dropped", key)
                self._forget_local(key)
                return remote_stat
            self._evict(victims)
            if mutation.contended:
                self._drop_local(key)
        return remote_stat

    def put(self, key: str, value: Any) -> None:
        """Store `value` through the serializer, remote first."""
        self.put_stream(key, io.BytesIO(self.serializer.dumps(value)))

    def __setitem__(self, key: str, value: Any) -> None:
        self.put(key, value)

    def delete(self, key: str) -> bool:
        """Delete from the remote and the local store; True if either held the key."""
        with self._mutation(key), self._leased(key):
            removed = self.remote.delete(key)
            return self._drop_local(key) or removed

    def __delitem__(self, key: str) -> None:
        if not self.delete(key):
            raise KeyNotFoundError(key, "cached store")

    def invalidate(self, key: str) -> bool:
        """Drop the local copy (and any blocks of it) only; the next read fetches again."""
        key = validate_key(key)
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
        removed = self._forget_local(key)
        self.policy.on_delete(key)
        return removed

    def _forget_local(self, key: str) -> bool:
        """Delete the local copy without telling the policy."""
        self._stored_at.pop(key, None)
        return self.local.delete(key)

    def _evict(self, victims: Iterable[str]) -> None:
        for victim in victims:
            if self._forget_local(victim):
                self._count(EVICTIONS)
            self.policy.on_delete(victim)

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
            binary = WriteHandle.open(self, validate_key(key), parsed)  # type: ignore[assignment]
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


def _own_copy(error: BaseException) -> BaseException:
    """A copy of a fetch's error for one waiting reader, so tracebacks don't pile up."""
    try:
        mine = copy.copy(error)
    except Exception:
        return StoreError(str(error))
    mine.__traceback__ = None
    return mine
