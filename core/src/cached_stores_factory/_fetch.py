"""One miss, start to end: a lease, the fence, a revalidation or GET, a fenced insert, serving.

A fetch reads the key's fence before it asks the remote and stores what it got only if the
fence still holds, so a change made meanwhile in any process (a write, a delete, an
invalidation) is never overwritten by older bytes, whether or not a lease lapsed.
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
from ._store import EntryReader
from .errors import CorruptEntryError, KeyNotFoundError, RemoteError, StoreError
from .events import dispatcher as _events

if TYPE_CHECKING:
    from ._engine import CachedStore

__all__ = ["Fetch"]

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
            fetched = cached.remote_read(key, expired)
        except RemoteError as exc:
            if expired is not None and cached.may_serve_stale(key, expired.stat):
                log.debug("serving %r stale: %s", key, exc)
                cached.count_stale()
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
            flight.pin = cached.revalidated(key, expired)
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
                raise cached.remote_failed(key, source.error) from None
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
        refetched = self.cached.remote_read(self.key, None)
        assert refetched is not None
        with refetched:
            self.flight.serve_unkept(refetched.stream, refetched.stat)


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
