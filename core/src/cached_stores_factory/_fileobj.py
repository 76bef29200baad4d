"""File objects over a cached store: write handles that commit whole, and shared read spools."""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - its exit hook must register before ours
import errno
import functools
import io
import logging
import os
import tempfile
import threading
import weakref
from typing import IO, TYPE_CHECKING

import attrs

from .errors import KeyNotFoundError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

    from ._engine import CachedStore

__all__ = ["SPOOL_LIMIT", "OpenMode", "SharedSpool", "WriteHandle", "parse_mode"]

log = logging.getLogger("cached_stores_factory")

SPOOL_LIMIT = 4 * 1024 * 1024
"""Buffered bytes stay in memory up to this size, then spill to an anonymous temporary file."""

CHUNK = 256 * 1024
"""How much a copy moves at once: large enough to be cheap, small enough to keep memory flat."""


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

    @property
    def canonical(self) -> str:
        """The binary mode string Python's own file objects report ('rb+', 'ab', ...)."""
        return self.kind + "b" + ("+" if self.plus else "")


@functools.lru_cache(maxsize=64)
def parse_mode(mode: str) -> OpenMode:
    """Parse `mode` as Python's open() does, rejecting what it rejects.

    Cached, because every `open()` on the hit path parses its mode.
    """
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


# -- shared read spools ----------------------------------------------------------------------


class SharedSpool:
    """One object's bytes, read by many readers at once, each at its own position.

    Used when a fetched object is served but not kept locally (the policy refused it, or a
    concurrent write made it stale): every reader waiting on the fetch gets it without a
    second fetch.  Small objects stay in memory; larger ones go to an unlinked temporary file
    read with `os.pread`, so readers never share a file position and memory stays flat.
    """

    def __init__(self, data: bytes | None, fd: int | None, size: int) -> None:
        self._data = data
        self._fd = fd
        self.size = size

    @classmethod
    def fill(cls, stream: IO[bytes], limit: int = SPOOL_LIMIT) -> SharedSpool:
        """Read `stream` to its end into a new spool."""
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = stream.read(CHUNK)
            if not chunk:
                return cls(b"".join(chunks), None, size)
            chunks.append(chunk)
            size += len(chunk)
        fd, path = tempfile.mkstemp(prefix="csf-spool-")
        os.unlink(path)  # anonymous: the space goes back when the last reader lets go
        spool = cls(None, fd, 0)  # owns the descriptor from here on, even if a read fails
        with open(fd, "wb", closefd=False) as sink:
            for chunk in chunks:
                sink.write(chunk)
            del chunks
            while chunk := stream.read(CHUNK):
                sink.write(chunk)
                size += len(chunk)
        spool.size = size
        return spool

    def open(self) -> IO[bytes]:
        """A new reader positioned at the start."""
        if self._data is not None:
            return io.BytesIO(self._data)  # shares the bytes until someone writes
        return io.BufferedReader(_SpoolFile(self), CHUNK)

    def pread(self, size: int, offset: int) -> bytes:
        assert self._fd is not None
        return os.pread(self._fd, size, offset)

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _SpoolFile(io.RawIOBase):
    """A raw, read-only view of a spilled SharedSpool with a position of its own."""

    def __init__(self, spool: SharedSpool) -> None:
        super().__init__()
        self._spool: SharedSpool | None = spool  # kept alive by every open reader
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self._spool is None:
            raise ValueError("I/O operation on closed file.")
        view = memoryview(buffer).cast("B")
        data = self._spool.pread(len(view), self._position)
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self._spool is None:
            raise ValueError("I/O operation on closed file.")
        if whence == io.SEEK_END:
            offset += self._spool.size
        elif whence == io.SEEK_CUR:
            offset += self._position
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if offset < 0:
            raise OSError(errno.EINVAL, "Invalid argument")
        self._position = offset
        return offset

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        self._spool = None
        super().close()


# -- write handles ---------------------------------------------------------------------------

_unclosed: weakref.WeakSet[WriteHandle] = weakref.WeakSet()
_unclosed_lock = threading.Lock()


def _open_handles(store: CachedStore | None = None) -> list[WriteHandle]:
    with _unclosed_lock:
        return [h for h in _unclosed if store is None or h._store is store]


def close_handles(store: CachedStore | None, when: str) -> None:
    """Commit and close every open handle (of `store`, or of every store), logging failures."""
    for handle in _open_handles(store):
        handle._close_quietly(when)


def _commit_unclosed_at_exit() -> None:
    """The seed's examples never close their handles: commit them before the interpreter goes."""
    close_handles(None, "at interpreter exit")


# threading's exit hooks run before non-daemon threads are joined and before
# concurrent.futures refuses new work, so an S3 upload that uses a thread pool still works.
# They run last-registered-first: concurrent.futures.thread, imported at the top, registered
# its shutdown hook before this one, so this one runs first.
getattr(threading, "_register_atexit", atexit.register)(_commit_unclosed_at_exit)


class WriteHandle(io.BufferedIOBase):
    """A read-write view of one entry, committed whole: remote first, then local.

    The entry's current bytes are copied into a spool lazily, only as far as reads, writes
    and seeks need them, so opening a large object with the default "r+b" and reading a few
    bytes costs a few bytes.  The spool is in memory up to SPOOL_LIMIT, then a temporary file.

    A commit (flush, close, context exit, garbage collection, interpreter exit) writes the
    whole entry if anything changed.  If the remote write fails, flush() or close() raises,
    the local store is unchanged and the handle stays open, so the caller can flush again.

    Where io.BytesIO and a regular file differ, it behaves as the file does: truncate() past
    the end extends with zero bytes, and a seek before the start or a negative truncate
    raises OSError.  One handle is not meant to be shared by threads without a lock.
    """

    def __init__(self, store: CachedStore, key: str, mode: OpenMode, source: IO[bytes] | None):
        super().__init__()
        self._store = store
        self._key = key
        self._mode = mode
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_LIMIT)  # noqa: SIM115
        self._source = source  # the entry's stream, read forward as far as `_filled`
        self._filled = 0
        # "w" and "x" create or truncate at once, as open() does: closing commits even if
        # nothing was written.  "r" and "a" commit only what changed.
        self._dirty = mode.kind in ("w", "x")
        self.name = key
        self.mode = mode.canonical

    @classmethod
    def open(cls, store: CachedStore, key: str, mode: OpenMode) -> WriteHandle:
        """Open `key` in a writing mode; the errors are those of open() on a path."""
        source = None
        if mode.kind == "x" and key in store:
            raise FileExistsError(errno.EEXIST, "Key exists in the cached store", key)
        if mode.kind in ("r", "a"):
            try:
                source = store.open_read(key).stream
            except KeyNotFoundError:
                if mode.kind == "r":
                    raise FileNotFoundError(
                        errno.ENOENT, "No such key in the cached store", key
                    ) from None
        handle = cls(store, key, mode, source)
        if mode.kind == "a":
            handle._dirty = source is None  # like open(path, "a"): the entry now exists
            handle._fill(None)
            handle._spool.seek(0, io.SEEK_END)
        with _unclosed_lock:
            _unclosed.add(handle)
        return handle

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<cached file {self._key!r} mode={self.mode!r}{state}>"

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

    # -- the lazy copy ----------------------------------------------------------------------

    def _fill(self, upto: int | None) -> None:
        """Copy the entry's bytes into the spool up to offset `upto` (None: all of them).

        Invariant: while a source remains, every byte written lies below `_filled` (writes
        fill past their end first), so copying never overwrites a write.
        """
        if self._source is None or (upto is not None and upto <= self._filled):
            return
        position = self._spool.tell()
        self._spool.seek(self._filled)
        while upto is None or self._filled < upto:
            chunk = self._source.read(CHUNK)
            if not chunk:
                self._drop_source()
                break
            self._spool.write(chunk)
            self._filled += len(chunk)
        self._spool.seek(position)

    def _drop_source(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

    # -- reading ----------------------------------------------------------------------------

    def read(self, size: int | None = -1) -> bytes:
        self._check_readable()
        if size is None or size < 0:
            self._fill(None)
            return self._spool.read()
        self._fill(self._spool.tell() + size)
        return self._spool.read(size)

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: WriteableBuffer) -> int:
        self._check_readable()
        with memoryview(buffer) as view:
            self._fill(self._spool.tell() + view.nbytes)
        return self._spool.readinto(buffer)

    def readinto1(self, buffer: WriteableBuffer) -> int:
        return self.readinto(buffer)

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        if limit == 0:  # what io.IOBase.readline answers, even when not readable
            self._check_open()
            return b""
        self._check_readable()
        start = self._spool.tell()
        while True:
            line = self._spool.readline(limit)
            if self._source is None or line.endswith(b"\n") or 0 <= limit <= len(line):
                return line
            self._spool.seek(start)
            self._fill(self._filled + CHUNK)

    # -- writing and moving -----------------------------------------------------------------

    def write(self, data: ReadableBuffer) -> int:
        self._check_writable()
        with memoryview(data) as view:
            size = view.nbytes
        if not size:
            return 0  # moves nothing, not even to the end in append mode
        if self._mode.kind == "a":
            self._spool.seek(0, io.SEEK_END)  # everything was copied when the handle opened
        else:
            self._fill(self._spool.tell() + size)
        written = self._spool.write(data)
        self._dirty = True
        return written

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_CUR:
            offset += self._spool.tell()
        elif whence == io.SEEK_END:
            offset += self._size()
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if offset < 0:
            raise OSError(errno.EINVAL, "Invalid argument")
        return self._spool.seek(offset)

    def tell(self) -> int:
        self._check_open()
        return self._spool.tell()

    def _size(self) -> int:
        """The entry's whole length, copying the rest of it first; the position stays."""
        self._fill(None)
        position = self._spool.tell()
        size = self._spool.seek(0, io.SEEK_END)
        self._spool.seek(position)
        return size

    def truncate(self, size: int | None = None) -> int:
        self._check_writable()
        position = self._spool.tell()
        if size is None:
            size = position
        if size < 0:
            raise OSError(errno.EINVAL, "Invalid argument")
        self._fill(size)
        self._drop_source()  # whatever lies past `size` is cut off
        if self._size() < size:  # a regular file grows with zero bytes; BytesIO would not
            self._spool.seek(size - 1)
            self._spool.write(b"\0")
            self._spool.seek(position)
        self._spool.truncate(size)
        self._dirty = True
        return size

    # -- committing -------------------------------------------------------------------------

    def flush(self) -> None:
        """Commit the whole entry if it changed since the last commit."""
        self._check_open()
        if not self._dirty:
            return
        self._fill(None)
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
        self._drop_source()
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
