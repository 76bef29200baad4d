"""The fences of a TempfileStore, shared by every process and thread that opens its directory.

`<root>/fences/stripes` holds FENCE_STRIPES records, one per stripe of keys (by a hash of the
key).  A record is the stripe's token and the change marks of its keys: up to MARKS marks
(a key's id, when its mark lapses, its run of changes, how many run, whether two overlapped),
and one mark for the whole stripe, set only when a change finds every mark taken.  A change
of a key moves its stripe's token, so a fetch of another key of the stripe may store
nothing: safe, and rare.  Tokens are random, so a record
that is lost (the file removed, the directory wiped) refuses every token handed out before.
A cache's `clear` moves every stripe's token at once (`Fences.move_all`), holding the locks
of all the records.

A record is read and changed only under a POSIX record lock on its bytes (`fcntl.lockf`)
taken together with `_SECTION`, one lock of this process:
- a record lock belongs to its process: a forked child never inherits it and a holder that
  dies loses it, so no stray process can block a stripe;
- it does not exclude the threads of one process, and the process loses all of its record
  locks on a file as soon as it closes ANY descriptor of that file.  So every section of
  the process, for every store, runs under `_SECTION`, and the file is opened and closed
  only inside one.  A section is a handful of system calls (the fetched bytes are already
  in a temp file), so one lock for all of them costs nothing measurable.
A process stopped inside its section (SIGSTOP, a debugger) holds its record: the others wait
at most SECTION_TIMEOUT seconds, then fail with ETIMEDOUT, so a fetch stores nothing and a
write is refused instead of hanging.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat as statmod
import struct
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["FENCE_STRIPES", "MARKS", "SECTION_TIMEOUT", "Fences", "StripeRecord"]

FENCE_STRIPES = 4096
"""Records in the fence file; keys of one stripe share a token."""

MARKS = 4
"""Keys of one stripe that may be marked changing at once before the whole stripe is."""

SECTION_TIMEOUT = 5.0
"""Seconds a section waits for its record (and this process's lock) before it fails."""

_FILE = "stripes"
_FILE_MODE = 0o600
# O_NONBLOCK: a FIFO planted in place of the file must not hang open().
_FILE_FLAGS = (
    os.O_RDWR
    | os.O_CREAT
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NONBLOCK", 0)
)
_TOKEN_BYTES = 16
_RUN_BYTES = 8
# token, stripe mark; then per mark: key id, lapses at, run, changes running, contended
_MARK = f"8sd{_RUN_BYTES}sHB"
_RECORD = struct.Struct(f"<{_TOKEN_BYTES}sd" + _MARK * MARKS)
_FIELDS = 5  # per mark
_NO_ID = bytes(8)


class _Section:
    """This process's lock for fence sections (see the module's docstring).

    A forked child gets a fresh one, since its copy may be held by a thread that does not
    exist there, and closes the copy of a file descriptor a section had open at the fork.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.descriptor = -1  # the fence file open in the running section
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._lock = threading.Lock()
        if self.descriptor != -1:
            with contextlib.suppress(OSError):
                os.close(self.descriptor)
            self.descriptor = -1

    def acquire(self, deadline: float) -> None:
        if not self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            raise _timed_out()

    def release(self) -> None:
        self._lock.release()


def _timed_out() -> OSError:
    return OSError(
        errno.ETIMEDOUT,
        f"the fence of this key's stripe stayed held for over {SECTION_TIMEOUT:g} s "
        "(a process stopped inside its section?)",
    )


_SECTION = _Section()


class _Mark:
    """One key's change mark: the run of changes it belongs to, how many run, and whether
    two of them overlapped (then none may store its copy)."""

    __slots__ = ("changes", "contended", "run", "until")

    def __init__(self, until: float, run: bytes, changes: int, contended: bool) -> None:
        self.until, self.run, self.changes, self.contended = until, run, changes, contended


class StripeRecord:
    """One stripe's fence as read under its lock: its token and its live change marks.

    `key_id` is the id of the key the section is for; `now` the store's clock at the read.
    A mark that lapsed is gone: the change that set it stores nothing when it ends.
    """

    def __init__(self, raw: bytes, key_id: bytes, now: float) -> None:
        fields = _RECORD.unpack(raw.ljust(_RECORD.size, b"\0"))
        self.token = fields[0].hex() if any(fields[0]) else ""
        self.stripe_mark: float = fields[1] if fields[1] > now else 0.0
        self.marks = {
            fields[i]: _Mark(fields[i + 1], fields[i + 2], fields[i + 3], bool(fields[i + 4]))
            for i in range(2, len(fields), _FIELDS)
            if fields[i] != _NO_ID and fields[i + 1] > now
        }
        self.key_id = key_id
        self.changed = False

    def encode(self) -> bytes:
        values: list[object] = []
        for key, mark in self.marks.items():
            values += (key, mark.until, mark.run, mark.changes, mark.contended)
        values += (_NO_ID, 0.0, bytes(_RUN_BYTES), 0, False) * (MARKS - len(self.marks))
        token = bytes.fromhex(self.token) if self.token else bytes(_TOKEN_BYTES)
        return _RECORD.pack(token, self.stripe_mark, *values)

    @property
    def changing(self) -> bool:
        """The key, or its whole stripe, is marked changing."""
        return self.key_id in self.marks or self.stripe_mark > 0.0

    def _move(self) -> str:
        self.token = os.urandom(_TOKEN_BYTES).hex()
        self.changed = True
        return self.token

    def fence(self) -> str | None:
        """The token for a fetch of the key (a new one if the record had none), or None."""
        if self.changing:
            return None
        return self.token or self._move()

    def admits(self, token: str) -> bool:
        """A fetch that took `token` may store: nothing changed the stripe since."""
        return bool(token) and token == self.token and not self.changing

    def begin(self, until: float) -> str:
        """Move the token and mark the key changing until `until`; the mark for `end`.

        With every mark of the stripe taken, the whole stripe is marked instead, and that
        change's mark is "": it stores nothing when it ends.
        """
        self._move()
        mark = self.marks.get(self.key_id)
        if mark is not None:
            mark.changes, mark.contended = mark.changes + 1, True
            mark.until = max(until, mark.until)
            return mark.run.hex()
        if len(self.marks) < MARKS:
            run = os.urandom(_RUN_BYTES)
            self.marks[self.key_id] = _Mark(until, run, 1, False)
            return run.hex()
        self.stripe_mark = max(until, self.stripe_mark)
        return ""

    def moved(self) -> bytes:
        """The record with no token (the next fetch makes one) and every change running
        contended (it stores no copy when it ends), encoded."""
        self.token = ""
        for mark in self.marks.values():
            mark.contended = True
        return self.encode()

    def end(self, run: str) -> str | None:
        """Move the token and end one change of the run `run`: the token, if its copy may go in.

        None while other changes of the key run, after two overlapped, or when the run's
        mark lapsed or was lost (others may have changed the key since).
        """
        token = self._move()
        mark = self.marks.get(self.key_id)
        if mark is None:
            return None
        if not run or mark.run.hex() != run:  # a lapsed run overlapped the one going now
            mark.contended = True
            return None
        mark.changes -= 1
        if mark.changes > 0:
            return None
        del self.marks[self.key_id]
        return None if mark.contended or self.changing else token


class Fences:
    """The fence records in the directory that `open_directory` opens (and makes if missing).

    The directory is opened at the first section, so a store that never fences opens no
    more than before.  `clock` times the change marks; every process sharing the directory
    must agree on it (wall time does, on one machine).
    """

    def __init__(self, open_directory: Callable[[], int], clock: Callable[[], float]) -> None:
        self._open_directory = open_directory
        self._directory: int | None = None
        self._closed = False
        self._clock = clock

    def close(self) -> None:
        """Close the directory; later sections raise OSError (EBADF).  Idempotent."""
        self._closed = True
        directory, self._directory = self._directory, None
        if directory is not None:
            os.close(directory)

    @contextlib.contextmanager
    def holding(self, name: str) -> Iterator[StripeRecord]:
        """Hold the record of the key hashed to `name` (hex); write it back if it changed.

        Errors are the filesystem's OSError; nothing is written back when the block raises.
        """
        stripe = int(name[:8], 16) % FENCE_STRIPES
        offset = stripe * _RECORD.size
        with self._section(range(stripe, stripe + 1)) as fd:
            raw = os.pread(fd, _RECORD.size, offset)
            record = StripeRecord(raw, bytes.fromhex(name[8:24]), self._clock())
            yield record
            if record.changed:
                os.pwrite(fd, record.encode(), offset)

    def move_all(self) -> None:
        """Move every stripe's token at once: no token handed out before is admitted again,
        and no change running now stores its copy (see `StripeRecord.moved`).

        Atomic against every section, in every process: it holds the record lock of every
        stripe while it rewrites them, and a section reads and checks its record (a
        `put_fenced` publishes its entry) only under its record's lock.  So each section
        runs wholly before the move, or wholly after it and sees the move.  The locks are
        taken in stripe order and a section holds one record only, so none waits in a cycle.
        """
        size = _RECORD.size
        with self._section(range(FENCE_STRIPES)) as fd:
            raw = os.pread(fd, FENCE_STRIPES * size, 0)
            now = self._clock()
            records = (
                StripeRecord(raw[offset : offset + size], _NO_ID, now).moved()
                for offset in range(0, len(raw), size)
            )
            os.pwrite(fd, b"".join(records), 0)

    @contextlib.contextmanager
    def _section(self, stripes: range) -> Iterator[int]:
        """The fence file, with the records of `stripes` locked, under this process's lock."""
        deadline = time.monotonic() + SECTION_TIMEOUT
        _SECTION.acquire(deadline)
        try:
            fd = self._open_locked(stripes, deadline)
            _SECTION.descriptor = fd
            try:
                yield fd
            finally:
                _SECTION.descriptor = -1
                os.close(fd)  # drops the record locks
        finally:
            _SECTION.release()

    def _open_locked(self, stripes: range, deadline: float) -> int:
        """The fence file, the records of `stripes` locked, made anew if it was removed.

        A file removed between our open and our lock has no link left: the next open finds
        (or makes) the one every other process uses.  A directory removed is made again.
        """
        while True:
            if self._closed:
                raise OSError(errno.EBADF, "closed")
            if self._directory is None:
                self._directory = self._open_directory()
            try:
                fd = os.open(_FILE, _FILE_FLAGS, _FILE_MODE, dir_fd=self._directory)
            except FileNotFoundError:  # the directory itself is gone: make it again
                os.close(self._directory)
                self._directory = None
                continue
            try:
                if not statmod.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(errno.EINVAL, f"{_FILE} (fences) is not a regular file")
                for stripe in stripes:
                    _lock_record(fd, stripe * _RECORD.size, deadline)
                if os.fstat(fd).st_nlink:
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)


def _lock_record(fd: int, offset: int, deadline: float) -> None:
    """Lock the record at `offset`, polling: fcntl has no timed wait."""
    delay = 0.0005
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, _RECORD.size, offset, os.SEEK_SET)
            return
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another process has it
            if time.monotonic() >= deadline:
                raise _timed_out() from None
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
