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


class _Fence:
    """A key's fence: its token, and the run of changes marking it, if any.

    A run is the changes that overlap from the first begin to the last end; `run` names it,
    so an end from an earlier run (its mark lapsed or was lost) is told apart.
    """

    __slots__ = ("changes", "contended", "run", "token", "until")

    def __init__(self, token: str) -> None:
        self.token = token
        self.changes = 0
        self.run = ""
        self.contended = False  # two changes of the run overlapped: none may store its copy
        self.until = 0.0  # when the run's mark lapses


class MemoryStore(Store):
    """Entries live in this process's memory and vanish with it.

    Fences hold for every cached store of this process that shares the instance.

    Args:
        clock: The time stamped as each entry's `stat().modified` and that times change
            marks, in seconds since the epoch; tests pass a fake one to age entries.
    """

    fences_shared = True

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._entries: dict[str, tuple[bytes, EntryStat]] = {}
        # A lost fence record only makes a fetch in flight store nothing, so the map is
        # emptied of all but the change marks when it grows large.
        self._fences: dict[str, _Fence] = {}
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
            fence = self._fence(key)
            return fence.token if not fence.changes else None

    def put_fenced(
        self, key: str, stream: IO[bytes], *, etag: str | None, fence: str
    ) -> EntryStat | None:
        data = bytes(stream.read())
        stat = self._stamp(data, etag)
        with self._lock:
            current = self._fence(key)
            if current.changes or current.token != fence:
                return None
            self._entries[key] = (data, stat)
        return stat

    def begin_change(self, key: str, *, hold: float) -> tuple[bool, str]:
        with self._lock:
            fence = self._fence(key)
            if fence.changes:
                fence.contended = True
            else:
                fence.run, fence.contended = str(next(self._tokens)), False
            fence.changes += 1
            fence.until = self._clock() + hold
            fence.token = str(next(self._tokens))
            return self._entries.pop(key, None) is not None, fence.run

    def end_change(self, key: str, mark: str) -> str | None:
        with self._lock:
            self._entries.pop(key, None)
            fence = self._fence(key)
            fence.token = str(next(self._tokens))
            if not fence.changes or fence.run != mark:  # lapsed or lost since it began
                fence.contended = bool(fence.changes)  # and overlapped the run going now
                return None
            fence.changes -= 1
            return None if fence.changes or fence.contended else fence.token

    def move_fences(self) -> None:
        """Forget every record but the change marks (a record made anew has a new token),
        and let no change running now store its copy.

        A marked key's token needs no move: `fence` handed none of it out while marked.
        """
        with self._lock:
            self._keep_marks_only()
            for fence in self._fences.values():
                fence.contended = True

    def _keep_marks_only(self) -> None:
        self._fences = {name: kept for name, kept in self._fences.items() if kept.changes}

    def _fence(self, key: str) -> _Fence:
        """The key's fence record, new if none; changes whose mark lapsed are forgotten."""
        fence = self._fences.get(key)
        if fence is None:
            if len(self._fences) > 2 * len(self._entries) + 1024:
                self._keep_marks_only()
            fence = self._fences[key] = _Fence(str(next(self._tokens)))
        elif fence.changes and fence.until <= self._clock():
            fence.changes, fence.contended = 0, False
            fence.token = str(next(self._tokens))
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

    def location(self) -> tuple[str, str]:
        """This object's own dict: only the same MemoryStore overlaps it."""
        return (f"memory store {id(self):#x}", "")
