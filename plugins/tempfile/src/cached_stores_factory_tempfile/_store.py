"""TempfileStore: entries as files in a private directory, safe against hostile names.

Layout under the store's root (every directory mode 0700):

    objects/<sha256 of the key>        the entry's bytes
    objects/<sha256 of the key>.meta   JSON sidecar: key, size, digest, etag, stored time, inode
    objects/.tmp-*                     writes in progress (swept after an hour if orphaned)
    state/                             `state_dir()`: policies' lasting state, never an entry

Files are named by the key's hash, so no key has path components: `..`, symlinked
directories, case folding and unicode normalisation cannot make two keys collide or lead
out of the root.  Files are opened relative to a descriptor of `objects/` with O_NOFOLLOW,
so a symlink planted in place of an entry is never followed.

A hit costs one `open` and one `fstat` (the DESIGN's hit-path budget): the stat reported
with an open entry comes from the descriptor itself, never from the sidecar.  Entries up to
64 KiB are then read whole with one `read` (cheaper than building a file object); larger
ones are returned as a real buffered file.  The sidecar
is read only by `stat()` and `keys()`; it records the inode of the data file it describes,
so a sidecar left behind by a crash or by a racing writer is recognised and ignored.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import json
import logging
import os
import re
import secrets
import stat as statmod
import tempfile
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cached_stores_factory import EntryReader, EntryStat, Store
from cached_stores_factory.errors import ConfigError, KeyNotFoundError, StoreError

__all__ = ["TempfileStore"]

log = logging.getLogger("cached_stores_factory.tempfile")

_DIR_MODE = 0o700
_FILE_MODE = 0o600
_CHUNK = 1024 * 1024
_SMALL_ENTRY = 64 * 1024  # read whole on open; larger entries stream from the file
_STALE_SECONDS = 3600.0
_TEMP_PREFIX = ".tmp-"
_META_SUFFIX = ".meta"
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}")

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


@functools.lru_cache(maxsize=65536)
def _entry_name(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _open_private_dir(path: str | Path, *, dir_fd: int | None = None) -> int:
    """Create (mode 0700) and open a directory we own, refusing symlinks and shared ones."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, _DIR_MODE, dir_fd=dir_fd)
    try:
        fd = os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise StoreError(
            f"cannot open the store directory {path}: {exc.strerror} "
            "(it must be a real directory, not a symlink)"
        ) from None
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

    `root`, when given, is the directory to use instead (created if missing).  Entries,
    their metadata and policy state survive restarts and are shared by every process that
    opens the same directory.  `fsync` (default True) flushes each entry to disk before it
    becomes visible, so even a power cut leaves the old entry or the new one, whole.
    """

    def __init__(
        self, name: str, root: str | os.PathLike[str] | None = None, *, fsync: bool = True
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
        self._closer = weakref.finalize(self, os.close, self._objects)
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
        """The hit path: open, fstat, then read a small entry whole or wrap a large one.

        An entry's file never changes once it is in place (writers rename new files over
        it), so reading a small one at once is the same snapshot a file object would give,
        with three syscalls fewer.  Larger entries stream from a real buffered file.
        """
        fd, info = self._open_entry(key)
        stat = EntryStat(size=info.st_size, modified=info.st_mtime)
        if info.st_size > _SMALL_ENTRY:
            # An explicit buffer size spares open() its isatty() probe.  It stays small: a
            # 1 MiB buffer beside a 1 MiB result makes glibc trim and re-fault its heap on
            # every hit (257 page faults per 1 MiB read in a small process).
            return EntryReader(open(fd, "rb", buffering=_SMALL_ENTRY), stat)
        try:
            data = os.read(fd, info.st_size)
            while len(data) < info.st_size and (more := os.read(fd, info.st_size - len(data))):
                data += more
        finally:
            os.close(fd)
        return EntryReader(io.BytesIO(data), stat)

    def get(self, key: str) -> bytes:
        with self.open_read(key) as entry:
            return entry.read()

    def __contains__(self, key: object) -> bool:
        try:
            info = os.stat(_entry_name(key), dir_fd=self._objects, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return statmod.S_ISREG(info.st_mode)

    def _sidecar(self, name: str) -> dict[str, Any] | None:
        """The sidecar's fields, or None if it is missing, unreadable or not a regular file."""
        try:
            fd = os.open(name + _META_SUFFIX, _READ_FLAGS, dir_fd=self._objects)
        except OSError:
            return None
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
        """Size and time from the data file; digest and etag if its sidecar describes it."""
        fd, info = self._open_entry(key)
        os.close(fd)
        meta = self._sidecar(_entry_name(key))
        if meta is None or meta.get("inode") != info.st_ino or meta.get("size") != info.st_size:
            return EntryStat(size=info.st_size, modified=info.st_mtime)
        return EntryStat(
            size=info.st_size, modified=info.st_mtime, etag=meta.get("etag"), digest=meta["digest"]
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
        with self._disk(), os.scandir(self._objects) as entries:
            return [entry.name for entry in entries]

    # -- writing ----------------------------------------------------------------------------

    def _create_temp(self, name: str) -> tuple[str, int]:
        temp = f"{_TEMP_PREFIX}{name[:16]}-{secrets.token_hex(8)}"
        return temp, os.open(temp, _CREATE_FLAGS, _FILE_MODE, dir_fd=self._objects)

    def _publish(self, temp: str, name: str) -> None:
        os.replace(temp, name, src_dir_fd=self._objects, dst_dir_fd=self._objects)

    def _discard(self, temp: str) -> None:
        with contextlib.suppress(OSError):  # best effort: the sweep gets what this misses
            os.unlink(temp, dir_fd=self._objects)

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, _BytesChunks(data))  # type: ignore[arg-type]

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        """Copy `stream` to a temp file in chunks (constant memory), then rename it in place.

        The sidecar goes first: a crash between the two renames leaves a sidecar that names
        another inode, which `stat()` ignores, and never data without its key.
        """
        name = _entry_name(key)
        with self._disk():
            temp, fd = self._create_temp(name)
        try:
            digest = hashlib.sha256()
            with open(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):  # the source's errors stay its own
                    digest.update(chunk)
                    with self._disk():
                        out.write(chunk)
                with self._disk():
                    out.flush()
                    if self.fsync:
                        os.fsync(fd)
                    info = os.fstat(fd)
            stat = EntryStat(
                size=info.st_size,
                modified=info.st_mtime,
                etag=etag,
                digest="sha256:" + digest.hexdigest(),
            )
            with self._disk():
                self._write_sidecar(name, key, stat, info.st_ino)
                self._publish(temp, name)
        except BaseException:
            self._discard(temp)
            raise
        return stat

    def _write_sidecar(self, name: str, key: str, stat: EntryStat, inode: int) -> None:
        meta = {
            "key": key,
            "size": stat.size,
            "digest": stat.digest,
            "etag": stat.etag,
            "stored": stat.modified,
            "inode": inode,
        }
        temp, fd = self._create_temp(name)
        try:
            with open(fd, "wb") as out:
                out.write(json.dumps(meta).encode("utf-8"))
            self._publish(temp, name + _META_SUFFIX)
        except BaseException:
            self._discard(temp)
            raise

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
        """Remove what crashes leave behind, once it is an hour old.

        That is temp files of interrupted writes, and sidecars whose data file is gone (a
        delete interrupted between its two unlinks).  Younger ones may belong to a write in
        progress in another process.
        """
        deadline = time.time() - _STALE_SECONDS
        names = set(self._names())
        for name in names:
            orphan = name.endswith(_META_SUFFIX) and name[: -len(_META_SUFFIX)] not in names
            if not (name.startswith(_TEMP_PREFIX) or orphan):
                continue
            with contextlib.suppress(FileNotFoundError):
                info = os.stat(name, dir_fd=self._objects, follow_symlinks=False)
                if info.st_mtime < deadline:
                    os.unlink(name, dir_fd=self._objects)


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
