"""CachedStoreFileSystem: fsspec's AbstractFileSystem over a built cached store.

Paths are the cached store's keys: `csf://data/x.parquet` is the key `data/x.parquet`.
Directories are not stored anywhere: like S3's "folders", they are the key prefixes that
end in '/', so a directory exists while some key lies under it.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import io
import json
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from typing import IO, Any

from fsspec import AbstractFileSystem
from fsspec.spec import _Cached
from fsspec.transaction import Transaction

from cached_stores_factory import CachedStore, CachedStoreFactory, EntryStat, validate_key
from cached_stores_factory.errors import KeyNotFoundError

__all__ = ["CachedStoreFileSystem"]

_COPY_CHUNK = 1024 * 1024
_NO_TRANSACTIONS = (
    "csf:// writes commit when their file closes; fsspec transactions are not supported"
)


_stores: dict[str, CachedStore] = {}
_stores_lock = threading.Lock()


def _built(config: Mapping[str, Any] | str | os.PathLike[str]) -> CachedStore:
    """The process's one cached store for `config`, built on first use.

    fsspec keeps a filesystem per thread, so without this each thread would build its own
    store, and two threads reading one cold key would fetch it twice.  A file is known by its
    path and its version on disk (an edited file builds anew); a mapping by its contents.
    """
    if isinstance(config, Mapping):
        identity = "mapping:" + json.dumps(config, sort_keys=True, default=repr)
    else:
        path = os.path.realpath(config)
        try:
            info = os.stat(path)
        except OSError:
            return CachedStoreFactory.from_config(config).build()  # let it say what is wrong
        identity = f"file:{path}:{info.st_mtime_ns}:{info.st_size}"
    with _stores_lock:
        store = _stores.get(identity)
        if store is None:
            store = _stores[identity] = CachedStoreFactory.from_config(config).build()
        return store


class _Instances(_Cached):  # type: ignore[misc]
    """fsspec reuses a filesystem built with equal arguments: right for a config, never
    for a store object, whose repr can be the same as another store's."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("store") is not None:
            kwargs["skip_instance_cache"] = True
        return super().__call__(*args, **kwargs)


class _RefusedTransaction(Transaction):  # type: ignore[misc]
    """Refused on entry: `pipe_file`, `put_file` and `rm` write at once, so a transaction
    could only ever be half done."""

    def start(self) -> None:
        raise NotImplementedError(_NO_TRANSACTIONS)


class CachedStoreFileSystem(AbstractFileSystem, metaclass=_Instances):  # type: ignore[misc]
    """The `csf` protocol: read and write a cached store's keys through fsspec.

    Reads are served by the local store while it holds a fresh copy; `info` and `ls` take
    each entry's details from the fresh local copy, else from the remote.

    Args:
        config: A config file's path or a mapping, as for `CachedStoreFactory.from_config`;
            one cached store per config in a process, whatever the thread.  Give either
            this or `store`.
        store: A cached store you built, to wrap instead of a config.
        **storage_options: fsspec's own options for a filesystem (`skip_instance_cache`,
            for example).
    """

    protocol = "csf"
    root_marker = ""
    transaction_type = _RefusedTransaction

    def __init__(
        self,
        config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        *,
        store: CachedStore | None = None,
        **storage_options: Any,
    ) -> None:
        super().__init__(**storage_options)
        if (config is None) == (store is None):
            raise ValueError(
                "CachedStoreFileSystem needs exactly one of config= (a TOML path or a "
                "mapping) and store= (a built cached store)"
            )
        if store is None:
            assert config is not None
            store = _built(config)
        elif not isinstance(store, CachedStore):
            raise TypeError(
                f"store= must be a built CachedStore (CachedStoreFactory(...).build()), "
                f"not {type(store).__name__}"
            )
        self.store = store

    # -- paths ------------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """`csf://a/b`, `csf::a/b`, `/a/b/` and `a/b` all name the key `a/b`."""
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        stripped: str = super()._strip_protocol(path)
        return stripped.strip("/")

    def _key(self, path: str) -> str:
        return validate_key(self._strip_protocol(path))

    @staticmethod
    def _file_info(key: str, stat: EntryStat) -> dict[str, Any]:
        return {
            "name": key,
            "size": stat.size,
            "type": "file",
            "mtime": stat.modified,
            "etag": stat.etag,
        }

    @staticmethod
    def _directory_info(path: str) -> dict[str, Any]:
        return {"name": path, "size": 0, "type": "directory"}

    def _keys_under(self, path: str) -> Iterator[str]:
        return self.store.keys(f"{path}/" if path else "")

    # -- metadata ---------------------------------------------------------------------------

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """A file's size, mtime and etag (the fresh local copy's, else the remote's)."""
        path = self._strip_protocol(path)
        if not path:
            return self._directory_info("")
        try:
            return self._file_info(path, self.store.stat(validate_key(path)))
        except KeyNotFoundError:
            pass
        if next(iter(self._keys_under(path)), None) is not None:
            return self._directory_info(path)
        raise FileNotFoundError(errno.ENOENT, "No such key in the cached store", path)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """The files and directories directly under `path`; a file lists as itself."""
        path = self._strip_protocol(path)
        files: set[str] = set()
        directories: set[str] = set()
        start = len(path) + 1 if path else 0
        for key in self._keys_under(path):
            child, _, rest = key[start:].partition("/")
            name = f"{path}/{child}" if path else child
            (directories if rest else files).add(name)
        if not files and not directories:
            if path:
                info = self.info(path)  # a file lists as itself; else FileNotFoundError
                return [info] if detail else [info["name"]]
            return []
        if not detail:
            return sorted(files | directories)
        entries = [self._directory_info(name) for name in directories]
        entries += [self.info(name) for name in files]
        return sorted(entries, key=lambda entry: str(entry["name"]))

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Every file below `path` from one listing of the keys, not a walk of each level."""
        path = self._strip_protocol(path)
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        start = len(path) + 1 if path else 0
        found: dict[str, dict[str, Any] | None] = {}
        for key in self._keys_under(path):
            parts = key[start:].split("/")
            if maxdepth is None or len(parts) <= maxdepth:
                found[key] = None
            if withdirs:
                for depth in range(1, len(parts)):
                    if maxdepth is None or depth <= maxdepth:
                        name = "/".join([path, *parts[:depth]] if path else parts[:depth])
                        found[name] = self._directory_info(name)
        if withdirs and path and found:
            found[path] = self._directory_info(path)
        if not found and path and self.isfile(path):
            found[path] = None
        names = sorted(found)
        if not detail:
            return names
        return {name: found[name] or self.info(name) for name in names}

    def ukey(self, path: str) -> str:
        """The entry's etag when the stores know it, else fsspec's default."""
        info = self.info(path)
        etag = info.get("etag")
        return str(etag) if etag else super().ukey(path)

    def modified(self, path: str) -> datetime.datetime:
        info = self.info(path)
        if info["type"] != "file":
            raise IsADirectoryError(errno.EISDIR, "A directory has no modification time", path)
        return datetime.datetime.fromtimestamp(info["mtime"], tz=datetime.UTC)

    def start_transaction(self) -> None:
        raise NotImplementedError(_NO_TRANSACTIONS)

    # -- reading ----------------------------------------------------------------------------

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> IO[bytes]:
        if not autocommit:
            raise NotImplementedError(_NO_TRANSACTIONS)
        if mode not in ("rb", "wb", "ab", "xb"):
            raise ValueError(f"csf:// opens files in 'rb', 'wb', 'ab' or 'xb' mode, not {mode!r}")
        key = self._key(path)
        if mode != "rb":
            handle: IO[bytes] = self.store.open(key, mode)
            return handle
        try:
            # A fresh local copy; else a large object read in blocks as they are needed;
            # else one fetch of the whole object.
            entry = (
                self.store.open_fresh(key)
                or self.store.partials.open(key)
                or self.store.open_read(key)
            )
        except KeyNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "No such key in the cached store", key) from None
        # fsspec's own helpers (read_block, cat_file) ask an open file for its `size`.
        with contextlib.suppress(AttributeError):
            entry.stream.size = entry.stat.size  # type: ignore[attr-defined]
        return entry.stream

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        """The file's bytes, or those in [start, end); negative offsets count from the end."""
        with self.open(path, "rb") as handle:
            if (start is not None and start < 0) or (end is not None and end < 0):
                size = handle.seek(0, os.SEEK_END)
                start = max(0, size + start) if start is not None and start < 0 else start
                end = max(0, size + end) if end is not None and end < 0 else end
            begin = start or 0
            if end is not None and end <= begin:
                return b""
            handle.seek(begin)
            data: bytes = handle.read(-1 if end is None else end - begin)
            return data

    def get_file(self, rpath: str, lpath: str, callback: Any = None, **kwargs: Any) -> None:
        """Copy one file to the local path `lpath` (a directory makes a directory)."""
        if self.isdir(rpath):
            os.makedirs(lpath, exist_ok=True)
            return
        with self.open(rpath, "rb") as source, open(lpath, "wb") as target:
            shutil.copyfileobj(source, target, _COPY_CHUNK)

    # -- writing ----------------------------------------------------------------------------

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Write `value` as the file's bytes: remote first, then the local copy."""
        key = self._key(path)
        if mode == "create" and self.exists(key):
            raise FileExistsError(errno.EEXIST, "Key exists in the cached store", key)
        self.store.put_stream(key, io.BytesIO(value))

    def put_file(self, lpath: str, rpath: str, callback: Any = None, **kwargs: Any) -> None:
        """Upload the local file `lpath`, streamed: a large one never sits in memory."""
        if os.path.isdir(lpath):
            return  # directories exist only through the keys under them
        with open(lpath, "rb") as source:
            self.store.put_stream(self._key(rpath), source)

    def rm_file(self, path: str) -> None:
        key = self._key(path)
        if not self.store.delete(key) and not self.isdir(key):
            raise FileNotFoundError(errno.ENOENT, "No such key in the cached store", key)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Delete files, and with `recursive` everything under a directory.

        A directory goes with its last key, so it needs no delete of its own.
        """
        for name in reversed(self.expand_path(path, recursive=recursive, maxdepth=maxdepth)):
            key = self._strip_protocol(name)
            if key and not self.store.delete(validate_key(key)) and not recursive:
                if self.isdir(key):
                    raise IsADirectoryError(errno.EISDIR, "Pass recursive=True to delete", key)
                raise FileNotFoundError(errno.ENOENT, "No such key in the cached store", key)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Nothing to do: a directory exists once a key lies under it."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Nothing to do: a directory exists once a key lies under it."""

    def rmdir(self, path: str) -> None:
        """Nothing to do: a directory goes with the last key under it."""
