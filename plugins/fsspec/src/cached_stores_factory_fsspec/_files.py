"""The file objects csf:// hands out: readers that keep a position per thread, writers that
tell the filesystem when they commit."""

from __future__ import annotations

import errno
import io
import threading
from collections.abc import Callable
from typing import IO, Any

from cached_stores_factory.errors import EntryChangedError

__all__ = ["SharedReader", "WriteFile"]


class WriteFile(io.BufferedIOBase):
    """A write handle that drops the filesystem's knowledge of its key once it commits."""

    def __init__(self, handle: IO[bytes], changed: Callable[[], None]) -> None:
        super().__init__()
        self._handle = handle
        self._changed = changed
        self.name = handle.name
        self.mode = handle.mode

    def readable(self) -> bool:
        return self._handle.readable()

    def writable(self) -> bool:
        return self._handle.writable()

    def seekable(self) -> bool:
        return self._handle.seekable()

    def read(self, size: int | None = -1) -> bytes:
        return self._handle.read(-1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        return self._handle.read(size)

    def write(self, data: Any) -> int:
        return self._handle.write(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()

    def truncate(self, size: int | None = None) -> int:
        return self._handle.truncate(size)

    def flush(self) -> None:
        if not self._handle.closed:  # IOBase.close() flushes after the handle committed
            self._handle.flush()

    def discard(self) -> None:
        """Close without committing (the store's write handles offer it)."""
        try:
            self._handle.discard()  # type: ignore[attr-defined]
        finally:
            super().close()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._handle.close()  # the commit: if it raises, this stays open, as the handle does
        finally:
            self._changed()
        super().close()


class SharedReader(io.RawIOBase):
    """A file opened for reading, with a position of its own for each thread that reads it.

    DuckDB reads one file object from all its threads, each read a `seek` then a `read`; with
    one shared position another thread's seek lands between the two and the read returns
    other bytes (a wrong sum, a Parquet page that fails to decompress).  Here each thread's
    seek moves only its own position, and reads take turns on the stream below.  A thread
    starts where the last seek or read of any thread left off, so a file handed from one
    thread to another reads on as usual.
    """

    def __init__(
        self, stream: IO[bytes], size: int, name: str, changed: Callable[[], None]
    ) -> None:
        super().__init__()
        self._stream = stream
        self._changed = changed  # told when a read finds the object changed since it opened
        self._lock = threading.Lock()
        self._positions = threading.local()
        self._last = 0  # where the last seek or read of any thread left off
        self._stream_at = 0  # where the stream below is: a read that starts there seeks not
        self.size = size
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return getattr(self._positions, "offset", self._last)

    def _moved(self, offset: int) -> int:
        self._positions.offset = self._last = offset
        return offset

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: self.size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if base + offset < 0:
            raise OSError(errno.EINVAL, "Invalid argument")
        return self._moved(base + offset)

    def _at(self, read: Any, *args: Any) -> Any:
        """`read(*args)` on the stream from this thread's position, which moves past it."""
        self._check_open()
        with self._lock:
            position = self.tell()
            if position != self._stream_at:  # a seek of a large entry checks it whole once
                self._stream.seek(position)
            try:
                data = read(*args)
            except EntryChangedError:
                self._changed()  # what the filesystem knew of it is out of date
                raise
            self._stream_at = position + (data if isinstance(data, int) else len(data))
            self._moved(self._stream_at)
        return data

    def readinto(self, buffer: Any) -> int:
        count: int = self._at(self._stream.readinto, buffer)  # type: ignore[attr-defined]
        return count

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._at(self._stream.read, -1 if size is None else size)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readline(self, size: int | None = -1) -> bytes:
        data: bytes = self._at(self._stream.readline, -1 if size is None else size)
        return data

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()
