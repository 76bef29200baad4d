"""One miss, start to end: a lease, the fence, a revalidation or GET, a fenced insert, serving.

A fetch reads the key's fence before it asks the remote and stores what it got only if the
fence still holds, so a change made meanwhile in any process (a write, a delete, an
invalidation) is never overwritten by older bytes, whether or not a lease lapsed.

Ranged readers read the remote here too: a key's first stat, which shares the key's flights
with whole-object fetches, and the ranges themselves, counted as fetches.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterator
from time import perf_counter
from typing import IO, TYPE_CHECKING, Any, cast

from ._coordinator import Flight
from ._local import LOCAL_FAILURES
from ._log import lazy_logger
from ._stats import REVALIDATED, STALE_SERVED
from ._store import EntryReader, EntryStat, Store
from .errors import CorruptEntryError, KeyNotFoundError, RemoteError, StoreError
from .events import dispatcher as _events

if TYPE_CHECKING:
    from ._engine import CachedStore

__all__ = ["Fetch", "first_stat", "own_copy", "raise_failure", "read_range", "serve"]

log = lazy_logger("cached_stores_factory")


class Fetch:
    """The fetch of `key` that `flight`'s readers wait for."""

    __slots__ = ("cached", "expired", "flight", "key")

    def __init__(self, cached: CachedStore, key: str, flight: Flight) -> None:
        self.cached = cached
        self.key = key
        self.flight = flight
        self.expired: EntryReader | None = None  # the local copy, kept for revalidation

    def run(self) -> None:
        """Fetch, recording any error on the flight for its readers; always ends the flight."""
        flight = self.flight
        try:
            self._fetch()
        except Exception as exc:
            flight.error = exc
        except BaseException:  # KeyboardInterrupt and the like stay with the leader
            flight.error = StoreError(f"the fetch of {self.key!r} was interrupted")
            raise
        finally:
            pinned = None if flight.pin is None else flight.pin.stream
            if self.expired is not None and self.expired.stream is not pinned:
                self.expired.close()
            self.cached.coordinator.end_fetch(self.key)
            flight.done.set()

    def _fetch(self) -> None:
        local, key = self.cached.tier, self.key
        fence = None
        if not self.flight.changed and self._serve_fresh():
            return
        if not self.flight.changed and local.usable(key):
            fence = local.fence(key)
        if fence is None:
            self._fetch_remote(None)
            return
        with self._leased() as held:
            if held and self._serve_fresh():  # another process fetched it while this one waited
                return
            self._fetch_remote(fence)

    def _serve_fresh(self) -> bool:
        """Pin the local copy if it is fresh; keep it as `expired` for revalidation if not."""
        if self.expired is not None:
            self.expired.close()
            self.expired = None
        try:
            entry = self.cached.tier.open_entry(self.key)
        except LOCAL_FAILURES:
            self.flight.changed = True  # the local store is out: store nothing
            return False
        if entry is None:
            return False
        if self.cached.policy.is_fresh(self.key, entry.stat):
            self.flight.pin = entry
            return True
        self.expired = entry
        return False

    @contextlib.contextmanager
    def _leased(self) -> Iterator[bool]:
        """Hold the key's cross-process lease, if the local store or the policy offers one.

        A lease only saves work: a cold key read by many processes is fetched once while the
        others wait, then find the entry.  Fences keep the cache correct without it, so a
        lease that can't be taken (its server is down, its holder stopped) is gone without.
        """
        cached = self.cached
        lease = cached.local.lease(self.key)
        if lease is None:
            lease = cached.policy.lease(self.key)
        held = False
        with contextlib.ExitStack() as stack:
            if lease is not None:
                try:
                    stack.enter_context(lease)
                    held = True
                except LOCAL_FAILURES as exc:
                    log.warning("no lease on %r (%s); going on without one", self.key, exc)
            yield held

    def _fetch_remote(self, fence: str | None) -> None:
        """Ask the remote: revalidate the expired copy, or fetch the object and keep it."""
        cached, key, flight, expired = self.cached, self.key, self.flight, self.expired
        started = perf_counter() if expired is not None and _events.listeners else 0.0
        try:
            fetched = self._remote_read(expired)
        except RemoteError as exc:
            if expired is not None and self._may_serve_stale(expired.stat):
                log.debug("serving %r stale: %s", key, exc)
                cached.count(STALE_SERVED)
                cached.emit("stale_served", key, expired.stat.size, error=exc)
                flight.pin = expired
                return
            raise
        except KeyNotFoundError:
            if expired is not None:  # gone from the remote: so must the copy be
                cached.tier.drop_quietly(key)
            raise
        if started:
            size = None if fetched is None else fetched.stat.size
            seconds = perf_counter() - started
            cached.emit("revalidated" if fetched is None else "changed", key, size, seconds=seconds)
        if fetched is None:
            assert expired is not None
            flight.pin = self._revalidated(expired)
            return
        with fetched:
            self._keep(fetched, fence)

    def _keep(self, fetched: EntryReader, fence: str | None) -> None:
        """Store what the remote sent, if the fence held, and serve it to the readers."""
        cached, key, flight, stat = self.cached, self.key, self.flight, fetched.stat
        if fence is None or flight.changed or not cached.policy.admits(stat.size):
            flight.serve_unkept(fetched.stream, stat)
            return
        source = _RemoteStream(fetched.stream)
        try:
            stored = cached.local.put_fenced(
                key, cast(IO[bytes], source), etag=stat.etag, fence=fence
            )
            if stored is not None:
                flight.pin = cached.local.open_read(key)
        except Exception as exc:
            if source.error is not None:  # the remote's body broke off: not the cache's fault
                raise self._remote_failed(source.error) from None
            # A cache that cannot hold the object (full disk, a Redis value limit) must not
            # fail the read: fetch it again, for the waiting readers only.
            log.warning("caching %r locally failed (%s); serving it uncached", key, exc)
            if isinstance(exc, LOCAL_FAILURES) and not isinstance(exc, CorruptEntryError):
                cached.tier.outage.failed(exc)
            cached.tier.drop_quietly(key, tell_policy=False)
            stored = None
        if stored is None:  # the key changed meanwhile, or the copy could not be kept
            self._serve_refetched()
            return
        cached.tier.inserted(key, stored)
        if flight.changed:  # a change in this process began meanwhile (unfenced stores)
            cached.tier.drop_quietly(key)

    def _serve_refetched(self) -> None:
        refetched = self._remote_read(None)
        assert refetched is not None
        with refetched:
            self.flight.serve_unkept(refetched.stream, refetched.stat)

    def _remote_read(self, expired: EntryReader | None) -> EntryReader | None:
        """The remote's entry, or None if it still has the expired copy's version."""
        cached, key = self.cached, self.key
        etag = None if expired is None else expired.stat.etag or self._local_etag()
        try:
            if etag is not None:
                entry = cached.remote.open_read_if_changed(key, etag)
            else:
                entry = cached.remote.open_read(key)
        except KeyNotFoundError:
            raise
        except (RemoteError, *LOCAL_FAILURES) as exc:
            raise self._remote_failed(exc) from exc
        cached.remote_outage.answered()
        if entry is not None:
            cached.count_fetch(entry.stat.size)
            cached.emit("fetch", key, entry.stat.size)
        return entry

    def _remote_failed(self, error: Exception) -> RemoteError:
        """`error` from reading the remote, counted as its outage and told, as a RemoteError."""
        cached, key = self.cached, self.key
        cached.remote_outage.failed(error)
        if not isinstance(error, RemoteError):
            error = RemoteError(f"reading {key!r} from the remote {cached.remote!r}: {error}")
        cached.emit("remote_error", key, error=error)
        return error

    def _local_etag(self) -> str | None:
        """The entity tag recorded with the local copy (a hit's stat may leave it out)."""
        stat = self.cached.tier.entry_stat(self.key)
        return None if stat is None else stat.etag

    def _revalidated(self, expired: EntryReader) -> EntryReader:
        """The remote still has this version: stamp the copy fresh, and serve it."""
        cached, key = self.cached, self.key
        cached.count(REVALIDATED)
        try:
            stat = cached.local.touch(key)
        except (KeyNotFoundError, *LOCAL_FAILURES):
            log.debug("re-stamping %r failed; it is revalidated again next time", key)
            return expired
        cached.tier.stamp(key, stat)
        cached.policy.on_hit(key, stat)
        return EntryReader(expired.stream, stat)

    def _may_serve_stale(self, stat: EntryStat) -> bool:
        policy = self.cached.policy
        window = policy.stale_if_error
        return bool(window) and policy.expired_for(self.key, stat) <= window


def raise_failure(flight: Flight, *, leader: bool) -> None:
    """Raise the finished flight's error, if any: the leader's own, a copy for each waiter."""
    if flight.error is not None:
        if leader:
            raise flight.error
        raise own_copy(flight.error) from flight.error


def first_stat(cached: CachedStore, key: str) -> EntryStat | None:
    """What `key` is, for a ranged reader: one remote stat however many open it meanwhile.

    A whole-object fetch of `key` in flight answers instead, so the remote is not asked
    again: None when it kept a local copy (read that), else the stat of what it got.  Unless
    a change of the key began during that fetch: what it got may be older, so ask the remote.
    """
    coordinator = cached.coordinator
    flight, leader = coordinator.join_stat(key)
    if leader:
        try:
            flight.stat = cached.remote.stat(key)
        except Exception as exc:
            flight.error = exc
        except BaseException:  # KeyboardInterrupt and the like stay with the leader
            flight.error = StoreError(f"asking the remote for {key!r} was interrupted")
            raise
        finally:
            coordinator.end_stat(key)
            flight.done.set()
    else:
        flight.done.wait()
    try:
        raise_failure(flight, leader=leader)
        if flight.changed:  # only a fetch is marked changed, never a stat
            return cached.remote.stat(key)
        return flight.answer()
    finally:
        flight.release()


def read_range(cached: CachedStore, key: str, start: int, end: int, etag: str) -> EntryReader:
    """Bytes [start, end) of version `etag` of `key` in the remote, counted as a fetch."""
    entry = cached.remote.open_range(key, start, end, if_match=etag)
    cached.count_fetch(end - start)
    return entry


def serve(local: Store, key: str, flight: Flight) -> EntryReader:
    """One reader's entry from a finished flight: its pin, the local copy, or the spool."""
    if flight.spool is None:
        pin = flight.take_pin()
        if pin is not None:
            return pin
        try:
            return local.open_read(key)
        except (KeyNotFoundError, *LOCAL_FAILURES):
            flight.spool_pin()
    assert flight.spool is not None and flight.stat is not None
    return EntryReader(flight.spool.open(), flight.stat)


class _RemoteStream(io.RawIOBase):
    """The remote's body as the local store reads it, keeping the error if reading it failed.

    So a body that breaks off mid-copy is told apart from a local store that fails.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self.error: Exception | None = None

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


def own_copy(error: BaseException) -> BaseException:
    """A copy of a fetch's error for one waiting reader, so tracebacks don't pile up."""
    try:
        mine = copy.copy(error)
    except Exception:
        return StoreError(str(error))
    mine.__traceback__ = None
    return mine
