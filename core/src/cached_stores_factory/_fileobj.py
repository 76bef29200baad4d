"""Writable file objects over a cached store: buffer locally, commit on flush and close."""

from __future__ import annotations

import atexit
import io
import logging
import shutil
import tempfile
import threading
import weakref
from typing import TYPE_CHECKING

import attrs

from .errors import KeyNotFoundError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

    from ._engine import CachedStore

__all__ = ["OpenMode", "WriteHandle", "parse_mode"]

log = logging.getLogger("cached_stores_factory")

SPOOL_LIMIT = 4 * 1024 * 1024
"""Writes stay in memory up to this size, then spill to an anonymous temporary file."""


@attrs.frozen
class OpenMode:
    """A parsed `open()` mode string."""

    kind: str  # one of "r", "w", "a", "x"
    plus: bool
    binary: bool

    @property
    def writing(self) -> bool:
        return self.kind != "r" or self.plus

    @property
    def reading(self) -> bool:
        return self.kind == "r" or self.plus


def parse_mode(mode: str) -> OpenMode:
    """Parse `mode` as Python's open() does, rejecting what it rejects."""
    if not isinstance(mode, str):
        raise TypeError(f"mode must be str, not {type(mode).__name__}")
    chars = set(mode)
    if len(mode) != len(chars) or not chars <= set("rwaxb+t"):
        raise ValueError(f"invalid mode: {mode!r}")
    kinds = chars & set("rwax")
    if len(kinds) != 1:
        raise ValueError(f"must have exactly one of read/write/append/create mode: {mode!r}")
    if "b" in chars and "t" in chars:
        raise ValueError(f"can't have text and binary mode at once: {mode!r}")
    return OpenMode(kind=kinds.pop(), plus="+" in chars, binary="b" in chars)


_unclosed: weakref.WeakSet[WriteHandle] = weakref.WeakSet()
_unclosed_lock = threading.Lock()


@atexit.register
def _commit_unclosed_at_exit() -> None:
    """The original examples never close their handles: commit them before the interpreter goes."""
    with _unclosed_lock:
        handles = list(_unclosed)
    for handle in handles:
        handle._close_quietly("at interpreter exit")


class WriteHandle(io.BufferedIOBase):
    """A read-write view of one entry, buffered in a spool and committed as a whole.

    A commit writes the remote first, then the local copy, then tells the policy.  If the
    remote write fails, flush() or close() raises, the local store is unchanged and the handle
    stays open, so the caller can flush again.
    """

    def __init__(self, store: CachedStore, key: str, mode: OpenMode) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self._mode = mode
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_LIMIT)  # noqa: SIM115
        self._dirty = False
        self.name = key
        self.mode = (
            ("rb+" if mode.kind == "r" else mode.kind + "b+") if mode.plus else mode.kind + "b"
        )

    @classmethod
    def open(cls, store: CachedStore, key: str, mode: OpenMode) -> WriteHandle:
        handle = cls(store, key, mode)
        if mode.kind == "x" and key in store:
            raise FileExistsError(17, "Key exists in the cached store", key)
        if mode.kind in ("r", "a"):
            try:
                with store.open_read(key) as entry:
                    shutil.copyfileobj(entry.stream, handle._spool)
            except KeyNotFoundError:
                if mode.kind == "r":
                    raise FileNotFoundError(2, "No such key in the cached store", key) from None
                handle._dirty = True  # like open(path, "a"): the entry now exists, empty
            if mode.kind == "r":
                handle._spool.seek(0)
        else:
            handle._dirty = True  # "w" and "x" create or truncate at once, as open() does
        with _unclosed_lock:
            _unclosed.add(handle)
        return handle

    def __repr__(self) -> str:
        return f"<cached file {self._key!r} mode={self.mode!r}{' closed' if self.closed else ''}>"

    # -- capabilities -----------------------------------------------------------------------

    def readable(self) -> bool:
        self._check_open()
        return self._mode.reading

    def writable(self) -> bool:
        self._check_open()
        return self._mode.writing

    def seekable(self) -> bool:
        self._check_open()
        return True

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")

    def _check_readable(self) -> None:
        if not self.readable():
            raise io.UnsupportedOperation("read")

    def _check_writable(self) -> None:
        if not self.writable():
            raise io.UnsupportedOperation("write")

    # -- reading ----------------------------------------------------------------------------

    def read(self, size: int | None = -1) -> bytes:
        self._check_readable()
        return self._spool.read(-1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: WriteableBuffer) -> int:
        self._check_readable()
        return self._spool.readinto(buffer)

    def readinto1(self, buffer: WriteableBuffer) -> int:
        return self.readinto(buffer)

    # -- writing and moving -----------------------------------------------------------------

    def write(self, data: ReadableBuffer) -> int:
        self._check_writable()
        if self._mode.kind == "a":
            self._spool.seek(0, io.SEEK_END)
        written = self._spool.write(data)
        self._dirty = True
        return written

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET and offset < 0:
            raise ValueError(f"negative seek position {offset}")
        return self._spool.seek(offset, whence)

    def tell(self) -> int:
        self._check_open()
        return self._spool.tell()

    def truncate(self, size: int | None = None) -> int:
        self._check_writable()
        if size is not None and size < 0:
            raise ValueError(f"negative size value {size}")
        result = self._spool.truncate(size)
        self._dirty = True
        return result

    # -- committing -------------------------------------------------------------------------

    def flush(self) -> None:
        """Commit the whole entry if it changed since the last commit."""
        self._check_open()
        if not self._dirty:
            return
        position = self._spool.tell()
        self._spool.seek(0)
        try:
            self._store.put_stream(self._key, self._spool)
        finally:
            self._spool.seek(position)
        self._dirty = False

    def close(self) -> None:
        if self.closed:
            return
        self.flush()  # raises with the handle still open, so it can be flushed again
        self._spool.close()
        super().close()
        with _unclosed_lock:
            _unclosed.discard(self)

    def _close_quietly(self, when: str) -> None:
        try:
            self.close()
        except Exception:
            log.exception("committing %r %s failed; its writes are lost", self._key, when)

    def __del__(self) -> None:
        self._close_quietly("on garbage collection")
