"""MemoryStore: a thread-safe dict of bytes, for tests and as the fastest tier."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO

from .._store import BytesReader, EntryReader, EntryStat, Store
from ..errors import KeyNotFoundError

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Entries live in this process's memory and vanish with it.

    `clock` stamps `stat().modified` and times change marks; tests pass a fake one to age
    entries.  Fences hold for every cached store of this process that shares the instance.
    """

    fences_shared = True

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._entries: dict[str, tuple[bytes, EntryStat]] = {}
        # key -> (token, time the change mark lapses or None); a lost record only makes a
        # fetch in flight store nothing, so the map is simply emptied when it grows large.
        self._fences: dict[str, tuple[str, float | None]] = {}
        self._tokens = itertools.count()
        self._lock = threading.Lock()
        self._clock = clock

    def __repr__(self) -> str:
        return f"MemoryStore(<{len(self._entries)} entries>)"

    def _stamp(self, data: bytes, etag: str | None) -> EntryStat:
        import hashlib  # only writes need it: a cold start skips loading OpenSSL

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return EntryStat(size=len(data), modified=self._clock(), etag=etag, digest=digest)

    def get(self, key: str) -> bytes:
        try:
            return self._entries[key][0]
        except KeyError:
            raise KeyNotFoundError(key, "memory store") from None

    def put(self, key: str, data: bytes) -> None:
        data = bytes(data)
        stat = self._stamp(data, None)
        with self._lock:
            self._entries[key] = (data, stat)

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        data = bytes(stream.read())
        stat = self._stamp(data, etag)
        with self._lock:
            self._entries[key] = (data, stat)
        return stat

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._entries.pop(key, None) is not None

    def fence(self, key: str) -> str | None:
        with self._lock:
            token, until = self._fences.get(key) or self._new_fence(key, None)
            if until is not None and until <= self._clock():
                token, until = self._new_fence(key, None)
            return token if until is None else None

    def put_fenced(
        self, key: str, stream: IO[bytes], *, etag: str | None, fence: str
    ) -> EntryStat | None:
        data = bytes(stream.read())
        stat = self._stamp(data, etag)
        with self._lock:
            if self._fences.get(key) != (fence, None):
                return None
            self._entries[key] = (data, stat)
        return stat

    def begin_change(self, key: str, *, hold: float) -> bool:
        with self._lock:
            self._new_fence(key, self._clock() + hold)
            return self._entries.pop(key, None) is not None

    def end_change(self, key: str) -> str:
        with self._lock:
            self._entries.pop(key, None)
            return self._new_fence(key, None)[0]

    def _new_fence(self, key: str, until: float | None) -> tuple[str, float | None]:
        if len(self._fences) > 2 * len(self._entries) + 1024:  # keep only the change marks
            self._fences = {name: kept for name, kept in self._fences.items() if kept[1]}
        fence = self._fences[key] = (str(next(self._tokens)), until)
        return fence

    def keys(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            snapshot = list(self._entries)
        return (key for key in snapshot if key.startswith(prefix))

    def open_read(self, key: str) -> EntryReader:
        try:
            data, stat = self._entries[key]
        except KeyError:
            raise KeyNotFoundError(key, "memory store") from None
        return EntryReader(BytesReader(data), stat)

    def stat(self, key: str) -> EntryStat:
        try:
            return self._entries[key][1]
        except KeyError:
            raise KeyNotFoundError(key, "memory store") from None

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
