"""Spools: an object's bytes held once, in memory while small, on disk past SPOOL_LIMIT."""

from __future__ import annotations

import io
import os
import tempfile
from typing import IO, TYPE_CHECKING

from ._store import BytesReader, seek_target

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["CHUNK", "SPOOL_LIMIT", "SharedSpool", "new_spool"]

SPOOL_LIMIT = 4 * 1024 * 1024
"""Buffered bytes stay in memory up to this size, then spill to an anonymous temporary file."""

CHUNK = 256 * 1024
"""How much a copy moves at once: large enough to be cheap, small enough to keep memory flat."""


def new_spool() -> tempfile.SpooledTemporaryFile[bytes]:
    """An empty read-write spool; the caller closes it."""
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_LIMIT)


class SharedSpool:
    """One object's bytes, read by many readers at once, each at its own position.

    Used when a fetched object is served but not kept locally (the policy refused it, a
    concurrent change superseded it, or it was evicted before its readers opened it): every
    reader waiting on the fetch gets it without a second fetch.  Small objects stay in
    memory; larger ones are read from a file descriptor with `os.pread`, so readers never
    share a file position and memory stays flat.
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

    @classmethod
    def of(cls, stream: IO[bytes], size: int) -> SharedSpool:
        """A spool over an open entry of `size` bytes: its file shared if it has one, else copied.

        An open file outlives its unlinking, so a local entry evicted the moment it was
        stored can still be served from the descriptor its fetch opened.  A file that holds
        more than the entry's bytes (a store's own framing) is copied instead.
        """
        try:
            fd = os.dup(stream.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            return cls.fill(stream)
        if os.fstat(fd).st_size != size:
            os.close(fd)
            return cls.fill(stream)
        return cls(None, fd, size)

    def open(self) -> IO[bytes]:
        """A new reader positioned at the start."""
        if self._data is not None:
            return BytesReader(self._data)  # shares the bytes
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
        self._position = seek_target(offset, whence, self._position, self._spool.size)
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        self._spool = None
        super().close()
