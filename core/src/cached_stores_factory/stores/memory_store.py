"""MemoryStore: a thread-safe dict of bytes, for tests and as the fastest tier."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import IO

from .._store import BytesReader, EntryReader, EntryStat, Store
from ..errors import KeyNotFoundError

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Entries live in this process's memory and vanish with it.

    Args:
        clock: The time stamped as each entry's `stat().modified`, in seconds since the
            epoch; tests pass a fake one to age entries.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._entries: dict[str, tuple[bytes, EntryStat]] = {}
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
