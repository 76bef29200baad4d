"""TempfileStore: entries as files in a private directory, safe against hostile names.

Layout under the store's root (every directory mode 0700):

    objects/<sha256 of the key>        the entry's bytes, then a 20-byte trailer (below)
    objects/<sha256 of the key>.meta   JSON sidecar: key, size, digest, etag, stored time, inode
    objects/.tmp-*                     writes in progress, each flock()ed by its writer
    state/                             `state_dir()`: policies' lasting state, never an entry
    leases/<stripe>.lock               `lease()`: 1024 lock files, locked with POSIX record locks
    fences/stripes                     the keys' fences (see _fences.py), never an entry

Files are named by the key's hash, so no key has path components: `..`, symlinked
directories, case folding and unicode normalisation cannot make two keys collide or lead
out of the root.  Files are opened relative to a descriptor of `objects/` with O_NOFOLLOW,
so a symlink planted in place of an entry is never followed.

A hit costs one `open` and one `fstat` (the hit path's whole budget): the stat reported
with an open entry comes from the descriptor itself, never from the sidecar.  Entries up to
2 MiB are then read whole (one `read`, plus a `pread` of the trailer above 64 KiB), which is
cheaper than building a file object; larger ones are returned as a real buffered file.  The
sidecar is read only by `stat()` and `keys()`; it records the inode of the data file it describes,
so a sidecar left behind by a crash or by a racing writer is recognised and ignored.

Integrity: every data file ends with a trailer, b"CSF1" + the data's length + its XXH3-64
checksum (little-endian), so a hit verifies its bytes without a second file.  A file whose
trailer is missing or names another length (truncated, torn by a power cut, written by an
older version) raises CorruptEntryError at open.  Entries up to 2 MiB are checked before
any byte is served; larger ones are checked as they stream and raise CorruptEntryError from
the read that reaches their end (a seek first checks the whole entry once).  XXH3 was chosen
by measurement, as the only checksum cheap enough for every hit (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import io
import os
import re
import shutil
import stat as statmod
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import xxhash

from cached_stores_factory import BytesReader, EntryReader, EntryStat, Store
from cached_stores_factory._log import lazy_logger
from cached_stores_factory._store import seek_target
from cached_stores_factory.errors import (
    ConfigError,
    CorruptEntryError,
    KeyNotFoundError,
    StoreError,
)

from ._fences import Fences

__all__ = ["TempfileStore"]

log = lazy_logger("cached_stores_factory.tempfile")

_DIR_MODE = 0o700
_FILE_MODE = 0o600
_CHUNK = 1024 * 1024
_SMALL_ENTRY = 64 * 1024  # read with its trailer in one call
_WHOLE_ENTRY = 2 * 1024 * 1024  # read whole and checked on open; larger entries stream
_STALE_SECONDS = 3600.0
_TEMP_PREFIX = ".tmp-"
_META_SUFFIX = ".meta"
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}")
_TRAILER = struct.Struct("<4sQQ")  # magic, data length, XXH3-64 of the data
_MAGIC = b"CSF1"
_new_tuple = tuple.__new__
"""Builds the named tuples a hit returns without their Python-level constructors, which
would be two more Python calls on every hit; the size passed is never negative."""

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# O_NONBLOCK: a FIFO planted in place of an entry must not hang the reader in open().
_READ_FLAGS = os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
# open() errors meaning "something other than a regular file is planted here": a symlink
# (ELOOP under O_NOFOLLOW) or a socket (ENXIO).  They read as a missing entry.
_NOT_A_FILE = frozenset({errno.ELOOP, errno.ENXIO})
_CLOSED = -1  # the descriptor of a closed store: any *at() call on it fails with EBADF

LEASE_STRIPES = 1024
"""Keys share this many lock files (by a hash of the key), so leases never pile up files;
two keys of one stripe only wait for each other's fetch."""
LEASE_WAIT_SECONDS = 5.0
"""How long `with store.lease(key)` waits for another holder before it raises StoreError."""
_LEASE_POLL_SECONDS = 0.01
# O_NONBLOCK: a FIFO planted in place of a lock file must not hang open().
_LEASE_FLAGS = os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)


@functools.lru_cache(maxsize=65536)
@functools.lru_cache(maxsize=65536)
def _entry_name(key: str) -> str:
    """The file name of a key's entry; cached, as keys are, so a hit hashes nothing."""
    import hashlib  # here, not at start-up: loading OpenSSL is a noticeable part of a cold start

    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _open_private_dir(path: str | Path, *, dir_fd: int | None = None) -> int:
    """Create (mode 0700, with missing parents) and open a directory we own.

    Symlinks and directories that others can write are refused.
    """
    try:
        if dir_fd is None:
            missing = [p for p in Path(path).parents if not p.exists()]
            for parent in reversed(missing):  # os.makedirs gives only the leaf its mode
                with contextlib.suppress(FileExistsError):
                    os.mkdir(parent, _DIR_MODE)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, _DIR_MODE, dir_fd=dir_fd)
        fd = os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        not_a_directory = exc.errno in (errno.ENOTDIR, errno.ELOOP)  # a file, or a symlink
        hint = " (it must be a real directory, not a file or a symlink)" if not_a_directory else ""
        raise StoreError(f"cannot open the store directory {path}: {exc.strerror}{hint}") from None
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        os.close(fd)
        raise StoreError(
            f"refusing the store directory {path}: it must belong to this user and not be "
            "writable by group or others"
        )
    return fd


class TempfileStore(Store):
    """Entries as files in the directory `name` under the system temp directory.

    Entries, their metadata and policy state survive restarts and are shared by every process
    that opens the same directory.  Fences hold across every process and thread that opens
    the directory (`fences_shared`).

    Args:
        name: The directory's name under the system temp directory (`$TMPDIR`, `/tmp`).
        root: The directory to use instead, created with mode 0700 if missing.
        fsync: Flush each entry to disk before it becomes visible, so it survives a power
            cut.  Off by default: every read checks the entry against its checksum, so a
            file torn by a power cut is found corrupt, dropped and fetched again.
    """

    fences_shared = True

    def __init__(
        self, name: str, root: str | os.PathLike[str] | None = None, *, fsync: bool = False
    ) -> None:
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name:
            raise ConfigError(f"TempfileStore name must be one directory name, not {name!r}")
        self.name = name
        self.root = Path(root) if root is not None else Path(tempfile.gettempdir()) / name
        self.fsync = fsync
        root_fd = _open_private_dir(self.root)
        try:
            self._objects = _open_private_dir("objects", dir_fd=root_fd)
            os.close(_open_private_dir("state", dir_fd=root_fd))
        finally:
            os.close(root_fd)
        self._fences = Fences(functools.partial(_open_private_dir, self.root / "fences"), time.time)
        self._closer = weakref.finalize(self, _close_all, self._objects, self._fences)
        # Not at exit: handles still open then commit through this store, after finalizers.
        self._closer.atexit = False
        self._sweep_leftovers()

    def __repr__(self) -> str:
        return f"TempfileStore({self.name!r}, root={str(self.root)!r})"

    def _failure(self, exc: OSError) -> StoreError:
        if self._objects == _CLOSED:
            return StoreError(f"{self!r} is closed")
        return StoreError(f"{self!r}: {exc.strerror or exc}")

    @contextlib.contextmanager
    def _disk(self) -> Iterator[None]:
        """The filesystem's errors (disk full, permissions, a closed store) as StoreError."""
        try:
            yield
        except OSError as exc:
            raise self._failure(exc) from None

    def state_dir(self) -> Path:
        return self.root / "state"

    def location(self) -> tuple[str, str]:
        """The root with symlinks resolved, so a nested or aliased root is recognised."""
        return ("local directory", os.path.join(os.path.realpath(self.root), ""))

    def lease(self, key: str) -> contextlib.AbstractContextManager[object]:
        """A lock on one of LEASE_STRIPES files in `<root>/leases/`, shared by every process.

        A POSIX record lock (`lockf`) excludes other processes, and a thread lock per stripe
        the other threads of this one.  Both die with their holder and neither is inherited
        by a forked child.  A waiter gives up after LEASE_WAIT_SECONDS with StoreError (the
        engine then goes on without the lease), so a stopped holder never blocks it for good.
        """
        return self._lease(key)

    @contextlib.contextmanager
    def _lease(self, key: str) -> Iterator[None]:
        deadline = time.monotonic() + LEASE_WAIT_SECONDS
        stripe = int(_entry_name(key)[:8], 16) % LEASE_STRIPES
        with contextlib.ExitStack() as held:  # undone in reverse: the file, then the thread lock
            leases = self._open_leases()
            try:
                info = os.fstat(leases)
                in_process = _stripe_lock((info.st_dev, info.st_ino, stripe))
                # The thread lock comes first: this process must not open the stripe file
                # while another of its threads holds it, since closing any descriptor of a
                # file drops every POSIX lock the process has on it.
                if not in_process.acquire(timeout=max(deadline - time.monotonic(), 0)):
                    raise self._lease_busy(stripe)
                held.callback(_release_in_owner, in_process, os.getpid())
                fd = self._open_stripe(leases, stripe)
                held.callback(os.close, fd)  # drops the POSIX lock (none in a forked child)
            finally:
                os.close(leases)
            while not _try_lockf(fd):
                if time.monotonic() >= deadline:
                    raise self._lease_busy(stripe)
                time.sleep(_LEASE_POLL_SECONDS)
            yield

    def _open_leases(self) -> int:
        """`<root>/leases`, refused if it (or the root) has been replaced by a symlink."""
        try:
            root = os.open(self.root, _DIR_FLAGS)
        except OSError as exc:
            raise StoreError(f"{self!r}: cannot open the store directory: {exc.strerror}") from None
        try:
            return _open_private_dir("leases", dir_fd=root)
        except StoreError as exc:
            raise StoreError(f"{self!r}: {exc}") from None
        finally:
            os.close(root)

    def _open_stripe(self, leases: int, stripe: int) -> int:
        """One lease file, refused if it is a symlink or anything but a regular file."""
        name = f"{stripe:04d}.lock"
        try:
            fd = os.open(name, _LEASE_FLAGS, _FILE_MODE, dir_fd=leases)
        except OSError as exc:
            hint = " (it must be a regular file, not a symlink)" if exc.errno == errno.ELOOP else ""
            raise StoreError(
                f"{self!r}: cannot open the lease file leases/{name}: {exc.strerror}{hint}"
            ) from None
        if not statmod.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"{self!r}: the lease file leases/{name} is not a regular file")
        return fd

    def _lease_busy(self, stripe: int) -> StoreError:
        return StoreError(
            f"{self!r}: lease stripe {stripe:04d} still held elsewhere after {LEASE_WAIT_SECONDS} s"
        )

    def close(self) -> None:
        """Close the directory descriptor; later calls raise StoreError.  Idempotent."""
        self._closer()
        self._objects = _CLOSED

    # -- reading ----------------------------------------------------------------------------

    def _open_entry(self, key: str) -> tuple[int, os.stat_result]:
        """Open the entry's data file: one open and one fstat, following no symlink."""
        try:
            fd = os.open(_entry_name(key), _READ_FLAGS, dir_fd=self._objects)
        except FileNotFoundError:
            raise KeyNotFoundError(key, repr(self)) from None
        except OSError as exc:
            if exc.errno not in _NOT_A_FILE:
                raise self._failure(exc) from None
            log.warning("%r: entry for %r is not a regular file (%s)", self, key, exc.strerror)
            raise KeyNotFoundError(key, repr(self)) from None
        info = os.fstat(fd)
        if not statmod.S_ISREG(info.st_mode):
            os.close(fd)
            log.warning("%r: entry for %r is not a regular file", self, key)
            raise KeyNotFoundError(key, repr(self))
        return fd, info

    def open_read(self, key: str) -> EntryReader:
        """The hit path: open, fstat, read the entry whole and check it, or wrap a large one.

        An entry's file never changes once it is in place (writers rename new files over
        it), so reading it at once is the same snapshot a file object would give, with
        fewer syscalls, and its checksum is verified before a byte is returned.  Entries
        over 2 MiB stream from a buffered file that verifies them as they are read.
        """
        fd, info = self._open_entry(key)
        size = info.st_size - _TRAILER.size
        stat = _new_tuple(EntryStat, (size if size > 0 else 0, info.st_mtime, None, None))
        try:
            if size <= _SMALL_ENTRY:  # one read of data and trailer; slicing copies little
                whole = os.read(fd, info.st_size)
                if len(whole) < info.st_size:
                    whole += _read_exactly(fd, info.st_size - len(whole))
                view = memoryview(whole)
                data: bytes | memoryview = view[: stat.size]
                checksum = self._trailer(key, view[stat.size :], size)
            else:  # the trailer apart, so the data is one bytes object, never copied again
                checksum = self._trailer(key, os.pread(fd, _TRAILER.size, size), size)
                if size > _WHOLE_ENTRY:
                    corrupt = functools.partial(self._corrupt_streamed, key, info.st_ino)
                    raw = _VerifyingFile(io.FileIO(fd, "r"), size, checksum, corrupt)
                    fd = _CLOSED  # the file object owns it now
                    # An explicit buffer size spares open() its isatty() probe.  It stays
                    # small: a 1 MiB buffer beside a 1 MiB result makes glibc trim and
                    # re-fault its heap on every hit.
                    return EntryReader(io.BufferedReader(raw, _SMALL_ENTRY), stat)
                data = _read_exactly(fd, size)
        finally:
            if fd != _CLOSED:
                os.close(fd)
        if len(data) != size or xxhash.xxh3_64_intdigest(data) != checksum:
            raise self._corrupt(key)
        return _new_tuple(EntryReader, (BytesReader(data), stat))

    def _corrupt(
        self, key: str, what: str = "its bytes do not match their checksum"
    ) -> CorruptEntryError:
        return CorruptEntryError(f"{self!r}: the entry for {key!r} is corrupt: {what}")

    def _corrupt_streamed(self, key: str, inode: int) -> CorruptEntryError:
        """A large entry found corrupt while streaming: drop it, unless it was replaced."""
        with contextlib.suppress(OSError):
            name = _entry_name(key)
            if os.stat(name, dir_fd=self._objects, follow_symlinks=False).st_ino == inode:
                os.unlink(name, dir_fd=self._objects)
                os.unlink(name + _META_SUFFIX, dir_fd=self._objects)
        return self._corrupt(key, "its bytes do not match their checksum (dropped)")

    def touch(self, key: str) -> EntryStat:
        """Set the data file's mtime, which is the entry's stored time, to now."""
        try:
            os.utime(_entry_name(key), dir_fd=self._objects, follow_symlinks=False)
        except FileNotFoundError:
            raise KeyNotFoundError(key, repr(self)) from None
        except OSError as exc:
            raise self._failure(exc) from None
        return self.stat(key)

    def _trailer(self, key: str, trailer: bytes | memoryview, size: int) -> int:
        """The checksum a data file's trailer records, once it names the file's own length."""
        if len(trailer) != _TRAILER.size:
            raise self._corrupt(key, "it is shorter than its trailer")
        magic, length, checksum = _TRAILER.unpack(trailer)
        if magic != _MAGIC or length != size:
            raise self._corrupt(key, "its trailer is missing or names another length")
        checksum_value: int = checksum
        return checksum_value

    def get(self, key: str) -> bytes:
        with self.open_read(key) as entry:
            return entry.read()

    def __contains__(self, key: object) -> bool:
        try:
            info = os.stat(_entry_name(key), dir_fd=self._objects, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._failure(exc) from None
        return statmod.S_ISREG(info.st_mode)

    def _sidecar(self, name: str) -> dict[str, Any] | None:
        """The sidecar's fields, or None if it is missing, unreadable or not a regular file."""
        try:
            fd = os.open(name + _META_SUFFIX, _READ_FLAGS, dir_fd=self._objects)
        except OSError:
            return None
        import json  # sidecars are read by stat() and keys(), never by a hit

        with open(fd, "rb") as handle:
            if not statmod.S_ISREG(os.fstat(fd).st_mode):
                return None
            try:
                meta = json.loads(handle.read(64 * 1024))
            except ValueError:
                return None
        if not isinstance(meta, dict) or not isinstance(meta.get("key"), str):
            return None
        return meta if _entry_name(meta["key"]) == name else None

    def stat(self, key: str) -> EntryStat:
        """Size and time from the data file; digest and etag if its sidecar describes it.

        The file's trailer is read too, so a truncated entry is CorruptEntryError here as it
        is on open (a changed byte shows only when the data is read).
        """
        fd, info = self._open_entry(key)
        size = info.st_size - _TRAILER.size
        try:
            self._trailer(key, os.pread(fd, _TRAILER.size, max(size, 0)), size)
        finally:
            os.close(fd)
        meta = self._sidecar(_entry_name(key))
        if meta is None or meta.get("inode") != info.st_ino or meta.get("size") != size:
            return EntryStat(size=size, modified=info.st_mtime)
        return EntryStat(
            size=size, modified=info.st_mtime, etag=meta.get("etag"), digest=meta.get("digest")
        )

    def keys(self, prefix: str = "") -> Iterator[str]:
        names = set(self._names())
        for name in sorted(names):
            if not _ENTRY_NAME.fullmatch(name) or name + _META_SUFFIX not in names:
                continue
            meta = self._sidecar(name)
            if meta is not None and meta["key"].startswith(prefix):
                yield meta["key"]

    def _names(self) -> list[str]:
        if self._objects == _CLOSED:  # scandir(-1) would list the working directory
            raise StoreError(f"{self!r} is closed")
        with self._disk(), os.scandir(self._objects) as entries:
            return [entry.name for entry in entries]

    # -- writing ----------------------------------------------------------------------------

    def _create_temp(self, name: str) -> tuple[str, int]:
        """A new temp file, flock()ed for as long as its descriptor is open.

        The lock tells the start-up sweep that a live writer owns the file; the kernel drops
        it when the writer dies, however it dies.  A sweep may take the lock in the moment
        between create and flock and unlink the file, so the writer checks that its name
        still leads to its file, and tries a new name if not.
        """
        import secrets  # only writes need it

        while True:
            temp = f"{_TEMP_PREFIX}{name[:16]}-{secrets.token_hex(8)}"
            fd = os.open(temp, _CREATE_FLAGS, _FILE_MODE, dir_fd=self._objects)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                placed = os.stat(temp, dir_fd=self._objects, follow_symlinks=False)
            except FileNotFoundError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            if placed.st_ino == os.fstat(fd).st_ino:
                return temp, fd
            os.close(fd)

    def _publish(self, temp: str, name: str) -> None:
        os.replace(temp, name, src_dir_fd=self._objects, dst_dir_fd=self._objects)

    def _discard(self, temp: str) -> None:
        with contextlib.suppress(OSError):  # best effort: the sweep gets what this misses
            os.unlink(temp, dir_fd=self._objects)

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, _BytesChunks(data))  # type: ignore[arg-type]

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        """Copy `stream` to a temp file in chunks (constant memory), then rename it in place."""
        with self._spooled(key, stream, etag) as (stat, publish), self._disk():
            publish()
        return stat

    @contextlib.contextmanager
    def _spooled(
        self, key: str, stream: IO[bytes], etag: str | None
    ) -> Iterator[tuple[EntryStat, Callable[[], None]]]:
        """Write the entry and its sidecar to temp files; yield its stat and `publish`.

        Both temp files stay open, so flock()ed, until the block ends: the sweep of a
        process starting meanwhile leaves them be.  `publish` renames the data first, then
        its sidecar: a `delete()` between the two leaves only a sidecar, which is never
        listed and is swept; a crash between them leaves the data beside an older sidecar,
        which names another inode and so is ignored by `stat()`, or with none, which is
        swept.  What is not published when the block ends is removed, and a write that
        fails, in `publish` too, leaves no entry.
        """
        import json  # only writes need it

        name = _entry_name(key)
        removed: list[str] = []  # what the end of the block removes
        descriptors: list[int] = []
        try:
            with self._disk():
                temp, fd = self._create_temp(name)
            removed.append(temp)
            descriptors.append(fd)
            stat, inode = self._write_data(fd, stream, etag)
            meta = {
                "key": key,
                "size": stat.size,
                "digest": stat.digest,
                "etag": etag,
                "stored": stat.modified,
                "inode": inode,
            }
            with self._disk():
                meta_temp, meta_fd = self._create_temp(name)
                removed.append(meta_temp)
                descriptors.append(meta_fd)
                with open(meta_fd, "wb", closefd=False) as out:  # writes it all, or raises
                    out.write(json.dumps(meta).encode("utf-8"))

            def publish() -> None:
                self._publish(temp, name)
                removed[0] = name
                self._publish(meta_temp, name + _META_SUFFIX)
                removed.clear()

            yield stat, publish
        finally:
            for path in removed:
                self._discard(path)
            for fd in descriptors:
                os.close(fd)

    def _write_data(self, fd: int, stream: IO[bytes], etag: str | None) -> tuple[EntryStat, int]:
        """Copy `stream` and the trailer to the temp file `fd`; its stat and inode."""
        checksum = xxhash.xxh3_64()
        size = 0
        # closefd=False: the descriptor, and so the flock, stays until the rename is done.
        with open(fd, "wb", closefd=False) as out:
            while chunk := stream.read(_CHUNK):  # the source's errors stay its own
                checksum.update(chunk)
                size += len(chunk)
                with self._disk():
                    out.write(chunk)
            with self._disk():
                out.write(_TRAILER.pack(_MAGIC, size, checksum.intdigest()))
                out.flush()
                if self.fsync:
                    os.fsync(fd)
                info = os.fstat(fd)
        digest = "xxh3-64:" + checksum.hexdigest()
        return EntryStat(size, info.st_mtime, etag, digest), info.st_ino

    # -- fences: see _fences.py ---------------------------------------------------------------

    def fence(self, key: str) -> str | None:
        with self._disk(), self._fences.holding(_entry_name(key)) as record:
            return record.fence()

    def put_fenced(
        self, key: str, stream: IO[bytes], *, etag: str | None, fence: str
    ) -> EntryStat | None:
        """Spool the entry first; then check the fence and rename, in one short section."""
        with (
            self._spooled(key, stream, etag) as (stat, publish),
            self._disk(),
            self._fences.holding(_entry_name(key)) as record,
        ):
            if not record.admits(fence):
                return None
            publish()
        return stat

    def begin_change(self, key: str, *, hold: float) -> tuple[bool, str]:
        with self._disk(), self._fences.holding(_entry_name(key)) as record:
            mark = record.begin(time.time() + hold)
            return self.delete(key), mark

    def end_change(self, key: str, mark: str) -> str | None:
        with self._disk(), self._fences.holding(_entry_name(key)) as record:
            self.delete(key)
            return record.end(mark)

    def move_fences(self) -> None:
        with self._disk():
            self._fences.move_all()

    def delete(self, key: str) -> bool:
        """Remove the data file, then its sidecar (a sidecar alone is never listed)."""
        name = _entry_name(key)
        with self._disk():
            try:
                os.unlink(name, dir_fd=self._objects)
            except FileNotFoundError:
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name + _META_SUFFIX, dir_fd=self._objects)
        return True

    def _sweep_leftovers(self) -> None:
        """Remove what crashes leave behind, never raising: a store opens whatever it finds.

        Temp files of writers that died go at once (no live writer holds their flock), and
        anything else named like a temp file (a directory, a symlink) too.  Sidecars whose
        data file is gone (a delete interrupted between its two unlinks) and data files
        without a sidecar (a write interrupted between its two renames) go once an hour
        old, since a younger one may be a write in progress.  On a read-only directory the
        sweep does nothing and says so once.
        """
        deadline = time.time() - _STALE_SECONDS
        try:
            names = set(self._names())
        except StoreError as exc:
            log.warning("%s; leftovers of crashed writers stay", exc)
            return
        for name in names:
            try:
                if name.startswith(_TEMP_PREFIX):
                    self._sweep_temp(name)
                elif _is_orphan(name, names):
                    info = os.stat(name, dir_fd=self._objects, follow_symlinks=False)
                    if info.st_mtime < deadline:
                        os.unlink(name, dir_fd=self._objects)
            except FileNotFoundError:
                continue  # another process swept it first
            except OSError as exc:
                log.warning("%r: cannot remove the leftover %s: %s", self, name, exc.strerror)
                if exc.errno == errno.EROFS:
                    return

    def _sweep_temp(self, name: str) -> None:
        """Remove one temp-named leftover unless a live writer holds its lock."""
        info = os.stat(name, dir_fd=self._objects, follow_symlinks=False)
        if statmod.S_ISDIR(info.st_mode):
            shutil.rmtree(name, dir_fd=self._objects)
            return
        if not statmod.S_ISREG(info.st_mode):
            os.unlink(name, dir_fd=self._objects)
            return
        fd = os.open(name, _READ_FLAGS, dir_fd=self._objects)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(name, dir_fd=self._objects)  # under the lock: no writer can own it now
        except BlockingIOError:
            return  # a live writer's file
        finally:
            os.close(fd)


_stripe_locks: dict[tuple[int, int, int], threading.Lock] = {}
_stripe_locks_guard = threading.Lock()


def _stripe_lock(stripe: tuple[int, int, int]) -> threading.Lock:
    """The thread lock of one stripe (leases directory's device and inode, stripe number)."""
    with _stripe_locks_guard:
        return _stripe_locks.setdefault(stripe, threading.Lock())


def _forget_stripe_locks() -> None:
    """In a forked child: the parent's threads, and so their thread locks, did not follow."""
    global _stripe_locks_guard  # noqa: PLW0603 - replaced, as a lock held at the fork stays held
    _stripe_locks.clear()
    _stripe_locks_guard = threading.Lock()


os.register_at_fork(after_in_child=_forget_stripe_locks)


def _release_in_owner(lock: threading.Lock, owner: int) -> None:
    """Release `lock` unless this is a forked child, whose thread locks are new since the fork."""
    if os.getpid() == owner:
        lock.release()


def _try_lockf(fd: int) -> bool:
    """Take the POSIX write lock on the whole file without waiting; False if it is held."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):  # EAGAIN or EACCES, as the platform says
        return False
    return True


def _close_all(objects: int, fences: Fences) -> None:
    os.close(objects)
    fences.close()


def _is_orphan(name: str, names: set[str]) -> bool:
    """A sidecar without its data file, or a data file without its sidecar."""
    if name.endswith(_META_SUFFIX):
        return name[: -len(_META_SUFFIX)] not in names
    return _ENTRY_NAME.fullmatch(name) is not None and name + _META_SUFFIX not in names


def _read_exactly(fd: int, size: int) -> bytes:
    """`size` bytes from `fd`, or fewer only if the file ends first."""
    data = os.read(fd, size)
    while len(data) < size and (more := os.read(fd, size - len(data))):
        data += more
    return data


class _VerifyingFile(io.RawIOBase):
    """A large entry's data (its trailer excluded), checked against its checksum as it streams.

    Reading to the end checks what was read and raises `corrupt` on a mismatch, so a reader
    that consumes the whole entry never accepts changed bytes.  The first seek checks the
    whole entry once (one more read of the file) and later reads go unchecked.
    """

    def __init__(
        self, file: io.FileIO, size: int, checksum: int, corrupt: Callable[[], Exception]
    ) -> None:
        super().__init__()
        self._file = file
        self._size = size
        self._expected = checksum
        self._corrupt = corrupt
        self._hash: Any = xxhash.xxh3_64()  # None once the whole entry has been checked
        self._position = 0
        self._broken = False  # a mismatch was found: every later read raises too

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        """None to give: the data file ends in the trailer, and reads through a descriptor
        would skip the checksum, so readers that want one (numpy.fromfile, polars, mmap)
        read through this object instead, as from any stream without a descriptor."""
        raise io.UnsupportedOperation("fileno: a cached entry has no descriptor of its own")

    def tell(self) -> int:
        return self._position

    def _fail(self) -> Exception:
        self._broken = True
        return self._corrupt()

    def _check(self, checksum: int) -> None:
        self._hash = None
        if checksum != self._expected:
            raise self._fail()

    def readinto(self, buffer: Any) -> int:
        if self._broken:
            raise self._fail()
        view = memoryview(buffer).cast("B")[: max(self._size - self._position, 0)]
        if not view.nbytes:
            return 0
        count = self._file.readinto(view)
        if not count:
            raise self._fail()  # the file ended early: it shrank under us
        self._consume(view[:count])
        return count

    def readall(self) -> bytes:
        if self._broken:
            raise self._fail()
        left = max(self._size - self._position, 0)
        data = self._file.read(left) or b""
        if len(data) != left:
            raise self._fail()
        if self._position == 0 and self._hash is not None:  # the usual whole read: one call
            self._position = self._size
            self._check(xxhash.xxh3_64_intdigest(data))
        else:
            self._consume(data)
        return data

    def _consume(self, data: bytes | memoryview) -> None:
        self._position += len(data)
        if self._hash is not None:
            self._hash.update(data)
            if self._position == self._size:
                self._check(self._hash.intdigest())

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = seek_target(offset, whence, self._position, self._size)
        if self._hash is not None:
            self._check(self._whole_checksum())
        self._position = self._file.seek(target)
        return self._position

    def _whole_checksum(self) -> int:
        checksum = xxhash.xxh3_64()
        offset = 0
        while offset < self._size:
            chunk = os.pread(self._file.fileno(), min(_CHUNK, self._size - offset), offset)
            if not chunk:
                raise self._fail()
            checksum.update(chunk)
            offset += len(chunk)
        checksum_value: int = checksum.intdigest()
        return checksum_value

    def close(self) -> None:
        self._file.close()
        super().close()


class _BytesChunks:
    """`put` writes through `put_stream` without copying `data` into a BytesIO first."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._offset = 0

    def read(self, size: int = -1) -> bytes | memoryview:
        end = len(self._view) if size < 0 else self._offset + size
        chunk = self._view[self._offset : end]
        self._offset += len(chunk)
        return chunk
