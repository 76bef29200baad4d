"""The cached store: read-through with single-flight, write-through, file objects."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import IO, Any, cast

import attrs

from ._fileobj import WriteHandle, parse_mode
from ._keys import validate_key
from ._policy import CachePolicy
from ._serializer import BytesSerializer, Serializer
from ._store import EntryReader, EntryStat, Store
from .errors import KeyNotFoundError

__all__ = ["CacheStats", "CachedStore"]

log = logging.getLogger("cached_stores_factory")
_MISSING: Any = object()


@attrs.define
class CacheStats:
    """Counters since the cached store was built.  `as_dict()` is what `stats()` returns."""

    hits: int = 0
    misses: int = 0
    remote_reads: int = 0
    remote_writes: int = 0
    evictions: int = 0
    bytes_from_remote: int = 0
    bytes_from_local: int = 0

    def as_dict(self) -> dict[str, int]:
        return attrs.asdict(self)


class CachedStore(Store):
    """A local store in front of a remote one, kept by a cache policy.

    It is itself a Store, so tiers nest: a cached store can be another one's remote.
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
        self._stats = CacheStats()
        self._stats_lock = threading.Lock()
        self._inflight: dict[str, Future[None]] = {}
        self._inflight_lock = threading.Lock()
        self.policy.bind(local)

    def __repr__(self) -> str:
        return (
            f"CachedStore(local={self.local!r}, remote={self.remote!r}, "
            f"policy={self.policy!r}, serializer={self.serializer!r})"
        )

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + delta)

    def stats(self) -> dict[str, int]:
        """hits, misses, remote_reads, remote_writes, evictions, bytes_from_remote/local."""
        with self._stats_lock:
            return self._stats.as_dict()

    # -- reading --------------------------------------------------------------------------

    def _fresh_local(self, key: str) -> EntryReader | None:
        try:
            entry = self.local.open_read(key)
        except KeyNotFoundError:
            return None
        if self.policy.is_fresh(key, entry.stat):
            self.policy.on_hit(key, entry.stat)
            self._count(hits=1, bytes_from_local=entry.stat.size)
            return entry
        entry.close()
        return None

    def open_read(self, key: str) -> EntryReader:
        """A fresh local entry with no remote call, else one fetch shared by concurrent readers."""
        entry = self._fresh_local(key)
        if entry is not None:
            return entry
        self._count(misses=1)
        with self._inflight_lock:
            flight = self._inflight.get(key)
            leader = flight is None
            if flight is None:
                flight = self._inflight[key] = Future()
        if leader:
            try:
                fetched = self._fetch(key)
            except BaseException as exc:
                flight.set_exception(exc)
                raise
            else:
                flight.set_result(None)
            finally:
                with self._inflight_lock:
                    del self._inflight[key]
            if fetched is not None:
                return fetched
        else:
            flight.result()  # the leader's error, if any, reaches every waiter
        try:
            return self.local.open_read(key)
        except KeyNotFoundError:
            # Not admitted locally, or evicted since: read the remote directly.
            return self._fetch(key, store=False) or self.local.open_read(key)

    def _fetch(self, key: str, *, store: bool = True) -> EntryReader | None:
        """Fetch from the remote.  Stored locally: None.  Not stored: a reader of a spool."""
        with self.remote.open_read(key) as remote_entry:
            stat = remote_entry.stat
            self._count(remote_reads=1, bytes_from_remote=stat.size)
            if store and self.policy.admits(stat.size):
                local_stat = self.local.put_stream(key, remote_entry.stream, etag=stat.etag)
                self._inserted(key, local_stat)
                return None
            spool = io.BytesIO(remote_entry.stream.read())
        return EntryReader(spool, stat)

    def _inserted(self, key: str, stat: EntryStat) -> None:
        victims = self.policy.on_insert(key, stat)
        for victim in victims:
            if self.local.delete(victim):
                self._count(evictions=1)
            self.policy.on_delete(victim)

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The value under `key`, through the serializer; `default` if given and missing."""
        try:
            with self.open_read(key) as entry:
                data = entry.read()
        except KeyNotFoundError:
            if default is _MISSING:
                raise
            return default
        return self.serializer.loads(data)

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def stat(self, key: str) -> EntryStat:
        try:
            stat = self.local.stat(key)
        except KeyNotFoundError:
            return self.remote.stat(key)
        return stat if self.policy.is_fresh(key, stat) else self.remote.stat(key)

    def __contains__(self, key: object) -> bool:
        return self._fresh_stat(key) or key in self.remote  # type: ignore[arg-type]

    def _fresh_stat(self, key: str) -> bool:
        try:
            return self.policy.is_fresh(key, self.local.stat(key))
        except KeyNotFoundError:
            return False

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys of the remote: the local store holds only copies."""
        return self.remote.keys(prefix)

    # -- writing --------------------------------------------------------------------------

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        """Write through: remote first, then local, then the policy.

        A failed remote write raises and leaves the local store as it was.  `stream` must be
        seekable, because the local copy is written from the same bytes.
        """
        start = stream.tell()
        remote_stat = self.remote.put_stream(key, stream, etag=etag)
        self._count(remote_writes=1)
        if self.policy.admits(remote_stat.size):
            stream.seek(start)
            local_stat = self.local.put_stream(key, stream, etag=remote_stat.etag)
            self._inserted(key, local_stat)
        else:
            self.invalidate(key)
        return remote_stat

    def put(self, key: str, value: Any) -> None:
        """Store `value` through the serializer, remote first."""
        self.put_stream(key, io.BytesIO(self.serializer.dumps(value)))

    def __setitem__(self, key: str, value: Any) -> None:
        self.put(key, value)

    def delete(self, key: str) -> bool:
        """Delete from the remote and the local store."""
        removed = self.remote.delete(key)
        return self.invalidate(key) or removed

    def __delitem__(self, key: str) -> None:
        if not self.delete(key):
            raise KeyNotFoundError(key, "cached store")

    def invalidate(self, key: str) -> bool:
        """Drop the local copy only; the next read fetches again."""
        key = validate_key(key)
        removed = self.local.delete(key)
        self.policy.on_delete(key)
        return removed

    def clear(self) -> int:
        """Drop every local copy; the remote is untouched."""
        return sum(1 for key in list(self.local.keys()) if self.invalidate(key))

    def purge(self) -> int:
        """Remove every local copy the policy says is stale; return how many went."""
        return sum(1 for key in list(self.policy.expired()) if self.invalidate(key))

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

        Reads come through the cache; writes are buffered and committed on flush and close.
        """
        key = validate_key(key)
        parsed = parse_mode(mode)
        if parsed.binary and (encoding is not None or errors is not None or newline is not None):
            raise ValueError("binary mode doesn't take an encoding, errors or newline argument")
        binary: IO[bytes] | WriteHandle
        if not parsed.writing:
            try:
                binary = self.open_read(key).stream
            except KeyNotFoundError:
                raise FileNotFoundError(2, "No such key in the cached store", key) from None
        else:
            binary = WriteHandle.open(self, key, parsed)
        if parsed.binary:
            return cast(IO[bytes], binary)
        return io.TextIOWrapper(
            cast(IO[bytes], binary),
            encoding=encoding or "utf-8",
            errors=errors,
            newline=newline,
            write_through=True,
        )

    def close(self) -> None:
        self.policy.close()
        self.local.close()
        self.remote.close()
