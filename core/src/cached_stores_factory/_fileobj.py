"""Write handles: file objects over one cached entry that commit whole, or not at all.

The lifecycle, as the user guide's table gives it:

- `close()` and a clean `with` exit commit: remote first, then local, then the policy.
- An exception leaving the `with` block, or `discard()`, throws the changes away.
- `flush()` uploads nothing: a commit is always the whole entry, never a partial state.
- A handle never closed commits when it is garbage-collected or at interpreter exit (after
  non-daemon threads have finished), as CPython's own files flush then, and only in the
  process that opened it.  At exit it is discarded instead, with a warning, when the thread
  that last wrote it is still running (a daemon thread, cut off mid-write) or when the
  program is ending through an unhandled exception or KeyboardInterrupt: what it holds then
  is likely a prefix, and a prefix must never replace the remote object.
- A forked child never touches its parent's handles: using one raises, and its exit neither
  commits them nor writes into their spools.
"""

from __future__ import annotations

import atexit
import errno
import functools
import io
import os
import sys
import tempfile
import threading
import weakref
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from . import _spool
from ._log import lazy_logger
from ._spool import CHUNK
from ._store import seek_target
from .errors import KeyNotFoundError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

    from ._engine import CachedStore

__all__ = ["OpenMode", "TextHandle", "WriteHandle", "close_handles", "parse_mode"]

log = lazy_logger("cached_stores_factory")


class OpenMode(NamedTuple):
    """A parsed `open()` mode string."""

    kind: str  # one of "r", "w", "a", "x"
    plus: bool
    binary: bool
    reading: bool
    writing: bool
    canonical: str  # the binary mode Python's own file objects report ('rb+', 'ab', ...)


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
    kind, plus = kinds.pop(), "+" in chars
    return OpenMode(
        kind,
        plus,
        binary="b" in chars,
        reading=kind == "r" or plus,
        writing=kind != "r" or plus,
        canonical=kind + "b" + ("+" if plus else ""),
    )


def open_file(
    store: CachedStore,
    key: str,
    mode: str,
    *,
    encoding: str | None,
    errors: str | None,
    newline: str | None,
) -> IO[Any]:
    """`store.open()` for every mode: a read stream or a WriteHandle, wrapped for text."""
    parsed = parse_mode(mode)
    if parsed.binary and (encoding is not None or errors is not None or newline is not None):
        raise ValueError("binary mode doesn't take an encoding, errors or newline argument")
    binary: IO[bytes] = (
        WriteHandle.open(store, key, parsed)  # type: ignore[assignment]
        if parsed.writing
        else store.open(key, "rb")
    )
    if parsed.binary:
        return binary
    text = (TextHandle if parsed.writing else io.TextIOWrapper)(
        binary,
        encoding=encoding or "utf-8",
        errors=errors,
        newline=newline,
        write_through=True,  # nothing waits in the wrapper when a commit runs
    )
    text.mode = mode  # type: ignore[misc]
    return text


# -- handles not closed yet ------------------------------------------------------------------

_unclosed: dict[int, weakref.ref[WriteHandle]] = {}
"""The handles not closed yet, by id; a plain dict, as it is touched by every open and close."""
_unclosed_lock = threading.Lock()


def _open_handles() -> list[WriteHandle]:
    with _unclosed_lock:
        return [handle for ref in _unclosed.values() if (handle := ref()) is not None]


def close_handles(store: CachedStore, when: str) -> None:
    """Commit and close every open handle of `store`, logging failures."""
    for handle in _open_handles():
        if handle._store is not store:
            continue
        handle._close_quietly(when)


def _close_handles_at_exit() -> None:
    """Commit the handles still open at exit, unless what they hold is likely cut short."""
    failure = _unhandled_exception()
    for handle in _open_handles():
        handle._close_at_exit(failure)


def _unhandled_exception() -> BaseException | None:
    """The exception ending the program, if one is.

    Before the exit hooks run, the interpreter keeps the unhandled exception it printed as
    `sys.last_value` (and `sys.last_exc` from 3.12); `sys.exit()` sets neither.  An
    interactive session sets them for every error it survives, so there they mean nothing.
    """
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return None
    failure: BaseException | None = getattr(sys, "last_exc", None) or getattr(
        sys, "last_value", None
    )
    return failure


def _running_threads() -> dict[int | None, threading.Thread]:
    """The threads still running, by identifier (a finished thread's may be reused)."""
    return {thread.ident: thread for thread in threading.enumerate()}


_forks = 0
"""How many forks made this process; a handle opened at another count is an ancestor's."""


def _leave_parent_handles() -> None:
    """In a forked child: the parent's handles are the parent's to write and commit.

    A spool spilled to disk shares its open file, offset included, with the parent, and its
    buffer holds bytes the parent has not flushed yet: the child's exit, closing the spool,
    would write them into the parent's file a second time.  So the child's copy of that file
    descriptor is pointed at /dev/null before anything can use it.
    """
    global _unclosed_lock, _forks  # noqa: PLW0603 - the parent may have held the lock
    _unclosed_lock = threading.Lock()
    _forks += 1
    handles = [handle for ref in _unclosed.values() if (handle := ref()) is not None]
    _unclosed.clear()
    spilled = [h._spool for h in handles if not isinstance(h._spool, io.BytesIO)]
    spilled = [file for file in spilled if not file.closed]
    if spilled:
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            for file in spilled:
                os.dup2(devnull, file.fileno(), inheritable=False)
        finally:
            os.close(devnull)


os.register_at_fork(after_in_child=_leave_parent_handles)
# atexit callbacks run after the interpreter has joined every non-daemon thread, so a worker
# still writing when the main thread ends finishes its handle before this commits the rest.
atexit.register(_close_handles_at_exit)


class WriteHandle(io.BufferedIOBase):
    """A read-write view of one entry, committed whole when it is closed.

    The entry's current bytes are copied into a spool lazily, only as far as reads, writes
    and seeks need them, so opening a large object with the default "r+b" and reading a few
    bytes costs a few bytes.  If the commit fails, close() raises with the handle still
    open, the remote and local stores as they were, so the caller can close again or discard.

    Where io.BytesIO and a regular file differ, it behaves as the file does: truncate() past
    the end extends with zero bytes, and a seek before the start or a negative truncate
    raises OSError.  One handle is not meant to be shared by threads without a lock.
    """

    def __init__(self, store: CachedStore, key: str, mode: OpenMode, source: IO[bytes] | None):
        super().__init__()
        self._store = store
        self._key = key
        self._mode = mode
        self._spool: io.BytesIO | io.BufferedRandom = io.BytesIO()  # to a file past `_limit`
        self._limit = _spool.SPOOL_LIMIT
        self._source = source  # the entry's stream, read forward as far as `_filled`
        self._filled = 0
        # "w" and "x" create or truncate at once, as open() does: closing commits even if
        # nothing was written.  "r" and "a" commit only what changed.
        self._dirty = mode.kind in ("w", "x")
        self._forks = _forks
        self._writer = threading.get_ident()  # the thread that last changed it
        self.name = key
        self.mode = mode.canonical
        with _unclosed_lock:  # before its spool can spill: a fork must find it
            _unclosed[id(self)] = weakref.ref(self)

    @classmethod
    def open(cls, store: CachedStore, key: str, mode: OpenMode) -> WriteHandle:
        """Open `key` in a writing mode; the errors are those of open() on a path."""
        source = None
        if mode.kind in ("r", "a"):  # opening the entry checks the key
            try:
                source = store.open_read(key).stream
            except KeyNotFoundError:
                if mode.kind == "r":
                    raise FileNotFoundError(
                        errno.ENOENT, "No such key in the cached store", key
                    ) from None
        else:
            store.checked_key(key)  # "w" and "x" read nothing: the key is checked here
            if mode.kind == "x" and key in store:
                raise FileExistsError(errno.EEXIST, "Key exists in the cached store", key)
        handle = cls(store, key, mode, source)
        if mode.kind == "a":
            handle._dirty = source is None  # like open(path, "a"): the entry now exists
            try:
                handle._fill(None)
            except BaseException:
                handle.discard()
                raise
            handle._spool.seek(0, io.SEEK_END)
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
        if self._forks != _forks:
            raise ValueError(
                f"{self!r} belongs to the process that opened it, before it forked this one: "
                "a forked child must open the key itself"
            )

    def _check_readable(self) -> None:
        self._check_open()
        if not self._mode.reading:
            raise io.UnsupportedOperation("read")

    def _check_writable(self) -> None:
        self._check_open()
        if not self._mode.writing:
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
        if upto is None and not self._filled:  # all of it, into the empty spool: one read
            data = self._source.read(self._limit + 1)
            self._filled = len(data)
            if len(data) <= self._limit:
                # Shared, not copied: io.BytesIO keeps the bytes it starts with until it is
                # written, and reading them whole returns that same object.
                self._spool = io.BytesIO(data)
                self._drop_source()
            else:
                self._write_spool(data)
        else:
            self._spool.seek(self._filled)
        while self._source is not None and (upto is None or self._filled < upto):
            chunk = self._source.read(CHUNK)
            if not chunk:
                self._drop_source()
                break
            self._write_spool(chunk)
            self._filled += len(chunk)
        self._spool.seek(position)

    def _write_spool(self, data: ReadableBuffer) -> int:
        """Write at the spool's position; past `_limit` bytes, move it to a temporary file."""
        written = self._spool.write(data)
        if self._spool.tell() > self._limit and isinstance(self._spool, io.BytesIO):
            memory = self._spool
            self._spool = tempfile.TemporaryFile()  # noqa: SIM115 - the handle closes it
            self._spool.write(memory.getbuffer())
            self._spool.seek(memory.tell())
            memory.close()
        return written

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
        written = self._write_spool(data)
        self._dirty = True
        self._writer = threading.get_ident()
        return written

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        size = self._size() if whence == io.SEEK_END else 0
        return self._spool.seek(seek_target(offset, whence, self._spool.tell(), size))

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
            self._write_spool(b"\0")
            self._spool.seek(position)
        self._spool.truncate(size)
        self._dirty = True
        self._writer = threading.get_ident()
        return size

    # -- the lifecycle ----------------------------------------------------------------------

    def flush(self) -> None:
        """Upload nothing: the entry is committed whole by close(), never a partial state."""
        if self.closed:  # a forked child's copy flushes too, when it is closed
            raise ValueError("I/O operation on closed file.")

    def close(self) -> None:
        """Commit the entry if it changed, then release the handle.

        If the commit raises, the handle stays open and both stores stay as they were.  In
        a process forked after the handle was opened, nothing is committed.
        """
        if self.closed:
            return
        if self._dirty and self._forks == _forks:  # a forked child never commits it
            self._fill(None)
            self._spool.seek(0)
            self._store.put_stream(self._key, self._spool)
            self._dirty = False
        self._release()

    def discard(self) -> None:
        """Throw the handle's changes away and release it: nothing reaches either store."""
        if not self.closed:
            self._release()

    def _release(self) -> None:
        self._drop_source()
        self._spool.close()
        super().close()
        with _unclosed_lock:
            _unclosed.pop(id(self), None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """A clean exit commits; an exception discards the changes and propagates unchanged."""
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def _close_quietly(self, when: str) -> None:
        if self.closed:
            return
        try:
            self.close()
        except Exception:
            log.exception("committing %r %s failed; its writes are lost", self._key, when)

    def _close_at_exit(self, failure: BaseException | None) -> None:
        """Commit at interpreter exit, or discard (with a warning) what is likely cut short."""
        writer = _running_threads().get(self._writer)
        if failure is not None:
            reason = f"the program is ending with an unhandled {type(failure).__name__}"
        elif writer is not None and writer is not threading.current_thread():
            reason = f"the thread writing it, {writer.name!r}, is still running"
        else:
            self._close_quietly("at interpreter exit")
            return
        if self._dirty and not self.closed:
            log.warning("discarding the writes to %r at interpreter exit: %s", self._key, reason)
        self.discard()

    def __del__(self) -> None:
        self._close_quietly("on garbage collection")


class TextHandle(io.TextIOWrapper):
    """The text view of a WriteHandle, with the same lifecycle.

    TextIOWrapper's own `__exit__` would close, and so commit, on an exception too.
    """

    buffer: WriteHandle

    def discard(self) -> None:
        """Throw the changes away: nothing reaches either store."""
        self.buffer.discard()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.discard()
        self.close()
