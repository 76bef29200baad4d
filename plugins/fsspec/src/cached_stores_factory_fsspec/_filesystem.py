"""CachedStoreFileSystem: fsspec's AbstractFileSystem over a built cached store.

Paths are the cached store's keys: `csf://data/x.parquet` is the key `data/x.parquet`.
Directories are not stored anywhere: like S3's "folders", they are the key prefixes that
end in '/', so a directory exists while some key lies under it.

What the filesystems over one store know of its names (listings, keys found missing) is
kept once per store in a process and dropped at once by every write or delete through them.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime
import errno
import io
import json
import os
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import IO, Any, cast

from fsspec import AbstractFileSystem
from fsspec.dircache import DirCache
from fsspec.spec import _Cached, make_instance
from fsspec.transaction import Transaction

from cached_stores_factory import (
    CachedStore,
    CachedStoreFactory,
    EntryReader,
    EntryStat,
    validate_key,
)
from cached_stores_factory._keys import is_reserved
from cached_stores_factory.errors import KeyNotFoundError

from ._files import SharedReader, WriteFile

__all__ = ["CachedStoreFileSystem"]

DEFAULT_MISSING_TTL = 5.0
"""Seconds a key found missing is answered as missing with no request (`missing_ttl`)."""

DEFAULT_LISTINGS_EXPIRY = 10.0
"""Seconds a directory listing is reused (`listings_expiry_time`; None: until a change)."""

_NO_TRANSACTIONS = (
    "csf:// writes commit when their file closes; fsspec transactions are not supported"
)
_MISSING = "No such key in the cached store"

Entry = dict[str, Any]

_stores: dict[str, CachedStore] = {}
_stores_lock = threading.Lock()


def _built(
    config: Mapping[str, Any] | str | os.PathLike[str], ranges: tuple[Any, ...]
) -> CachedStore:
    """The process's one cached store for `config` (and block settings), built on first use.

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
    identity += f":{ranges!r}"
    with _stores_lock:
        store = _stores.get(identity)
        if store is None:
            store = _stores[identity] = CachedStoreFactory.from_config(config).build()
        return store


def _name(entry: Entry) -> str:
    name: str = entry["name"]
    return name


def _ancestors(key: str) -> list[str]:
    """`key` and every directory above it, up to the root ''."""
    paths = [key]
    while key:
        key = key.rpartition("/")[0]
        paths.append(key)
    return paths


class _Names:
    """What this process's filesystems over one store know of its names.

    Listings (one DirCache per set of listing options), and what a lookup of one key found:
    its stat, or that it is missing.  A write or delete through any of them drops what they
    say about its key and its parents, and bumps `generation`, so a listing or lookup that
    overlapped it is not kept.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.generation = 0
        # key -> (time.monotonic() of the lookup, its stat, or None: missing)
        self.lookups: dict[str, tuple[float, EntryStat | None]] = {}
        self._dircaches: dict[tuple[Any, ...], DirCache] = {}

    def dircache(self, expiry: float | None, max_paths: int | None) -> DirCache:
        with self.lock:
            cache = self._dircaches.get((expiry, max_paths))
            if cache is None:
                cache = self._dircaches[(expiry, max_paths)] = DirCache(
                    use_listings_cache=expiry != 0, listings_expiry_time=expiry, max_paths=max_paths
                )
            return cache

    def changed(self, key: str) -> None:
        paths = _ancestors(key)
        with self.lock:
            self.generation += 1
            for path in paths:
                self.lookups.pop(path, None)
                for cache in self._dircaches.values():
                    cache.pop(path, None)

    def clear(self, path: str | None) -> None:
        """Forget `path`, what lies under it and the folders above it; all when None or ''."""
        if not path:
            with self.lock:
                self.generation += 1
                self.lookups.clear()
                for cache in self._dircaches.values():
                    cache.clear()
            return
        with self.lock:
            self.changed(path)
            for names in (self.lookups, *self._dircaches.values()):
                for name in [name for name in names if name.startswith(f"{path}/")]:
                    names.pop(name, None)


_names: weakref.WeakKeyDictionary[CachedStore, _Names] = weakref.WeakKeyDictionary()
_names_lock = threading.Lock()


def _names_of(store: CachedStore) -> _Names:
    with _names_lock:
        names = _names.get(store)
        if names is None:
            names = _names[store] = _Names()
        return names


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


def _seconds(name: str, value: Any, *, none: bool) -> float | None:
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        allowed = "a number of seconds >= 0" + (" or None" if none else "")
        raise ValueError(f"csf:// option {name} must be {allowed}, not {value!r}")
    return float(value)


def _bytes(name: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"csf:// option {name} must be a number of bytes >= {minimum}, not {value!r}"
        )
    return value


class CachedStoreFileSystem(AbstractFileSystem, metaclass=_Instances):  # type: ignore[misc]
    """The `csf` protocol: read and write a cached store's keys through fsspec.

    Reads are served by the local store while it holds a fresh copy; `info` and `ls` take
    each entry's details from the fresh local copy, else from the remote, and keep them for
    `listings_expiry_time` seconds; a key found missing stays missing for `missing_ttl`.
    `block_size` and `whole_limit` set how large objects are read in blocks.

    Args:
        config: A config file's path or a mapping, as for `CachedStoreFactory.from_config`;
            one cached store per config in a process, whatever the thread.  Give either
            this or `store`.
        store: A cached store you built, to wrap instead of a config.
        block_size: Bytes per block when a large object is read in ranges; None for the
            default.
        whole_limit: Objects up to this many bytes are read whole, larger ones in blocks;
            None for the default.
        missing_ttl: Seconds a key found missing stays missing (the negative cache); 0 asks
            every time.
        listings_expiry_time: Seconds a listing and an entry's details are kept; None keeps
            them until a write or delete through the cache changes them.
        max_paths: At most this many listings kept; None for no bound.
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
        block_size: int | None = None,
        whole_limit: int | None = None,
        missing_ttl: float = DEFAULT_MISSING_TTL,
        listings_expiry_time: float | None = DEFAULT_LISTINGS_EXPIRY,
        max_paths: int | None = None,
        **storage_options: Any,
    ) -> None:
        super().__init__(**storage_options)
        if (config is None) == (store is None):
            raise ValueError(
                "CachedStoreFileSystem needs exactly one of config= (a TOML path or a "
                "mapping) and store= (a built cached store)"
            )
        ranges = (_bytes("block_size", block_size, 1), _bytes("whole_limit", whole_limit, 0))
        self.missing_ttl = _seconds("missing_ttl", missing_ttl, none=False) or 0.0
        expiry = _seconds("listings_expiry_time", listings_expiry_time, none=True)
        if store is None:
            assert config is not None
            store = _built(config, ranges)
            # Kept whole so a worker process rebuilds the same store (see __reduce__).
            self._config: Mapping[str, Any] | str | None = (
                dict(config) if isinstance(config, Mapping) else os.path.abspath(config)
            )
        elif not isinstance(store, CachedStore):
            raise TypeError(
                f"store= must be a built CachedStore (CachedStoreFactory(...).build()), "
                f"not {type(store).__name__}"
            )
        else:
            self._config = None
        if ranges[0] is not None:
            store.partials.block_size = ranges[0]
        if ranges[1] is not None:
            store.partials.whole_limit = ranges[1]
        self.store = store
        self._names = _names_of(store)
        self.dircache = self._names.dircache(expiry, max_paths)

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt from its config in the process that unpickles it (Dask's workers)."""
        if self._config is None:
            raise TypeError(
                "a csf:// filesystem that wraps a store object (store=) cannot be pickled; "
                "build it from config= (a TOML path or a mapping) and each process builds "
                "the same store"
            )
        options = {k: v for k, v in self.storage_options.items() if k != "config"}
        return make_instance, (type(self), (self._config,), options)

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
    def _file_info(key: str, stat: EntryStat) -> Entry:
        return {
            "name": key,
            "size": stat.size,
            "type": "file",
            "mtime": stat.modified,
            "etag": stat.etag,
        }

    @staticmethod
    def _directory_info(path: str) -> Entry:
        return {"name": path, "size": 0, "type": "directory"}

    # -- what is known of names -------------------------------------------------------------

    def _changed(self, key: str) -> None:
        self._names.changed(key)

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget the listings and missing keys at `path`, under it and above it (all when None)."""
        self._names.clear(None if path is None else self._strip_protocol(path))
        super().invalidate_cache(path)

    def _looked_up(self, key: str) -> tuple[bool, EntryStat | None]:
        """Whether a recent lookup of `key` still answers, and its answer (None: missing).

        A stat answers for as long as a listing does (`listings_expiry_time`), a missing key
        for `missing_ttl`.
        """
        with self._names.lock:
            found = self._names.lookups.get(key)
            if found is None:
                return False, None
            since, stat = found
            lifetime = self.missing_ttl if stat is None else self.dircache.listings_expiry_time
            if lifetime is None or time.monotonic() - since < lifetime:
                return True, stat
            del self._names.lookups[key]
            return False, None

    def _known_missing(self, key: str) -> bool:
        known, stat = self._looked_up(key)
        return known and stat is None

    def _remember(self, key: str, stat: EntryStat | None, generation: int) -> None:
        """Keep what a lookup found, unless a write or delete overlapped it."""
        keep = self.missing_ttl if stat is None else self.dircache.use_listings_cache
        with self._names.lock:
            if keep and generation == self._names.generation:
                self._names.lookups[key] = (time.monotonic(), stat)

    def _found_missing(self, key: str, generation: int) -> FileNotFoundError:
        self._remember(key, None, generation)
        return FileNotFoundError(errno.ENOENT, _MISSING, key)

    def _listed(self, path: str) -> list[Entry] | None:
        """The cached listing of the directory `path`, or None."""
        with self._names.lock:
            try:
                listing: list[Entry] = self.dircache[path]
            except KeyError:
                return None
            return listing

    def _listed_entry(self, path: str) -> Entry | None:
        """`path`'s entry in its parent's cached listing; FileNotFoundError if that listing
        does not hold it; None if the parent is not cached."""
        if self._listed(path) is not None:
            return self._directory_info(path)
        listing = self._listed(path.rpartition("/")[0])
        if listing is None:
            return None
        at = bisect.bisect_left(listing, path, key=_name)  # a listing is sorted by name
        if at < len(listing) and listing[at]["name"] == path:
            return listing[at]
        raise FileNotFoundError(errno.ENOENT, _MISSING, path)

    def _details(self, entry: Entry) -> Entry:
        """A listed file's entry with its size and etag, asked for once (a HEAD on S3)."""
        if entry["type"] == "file" and entry["size"] is None:
            try:
                stat = self.store.stat(validate_key(entry["name"]))
            except KeyNotFoundError:
                self._changed(entry["name"])  # gone since it was listed
                raise FileNotFoundError(errno.ENOENT, _MISSING, entry["name"]) from None
            with self._names.lock:
                entry.update(self._file_info(entry["name"], stat))
        return dict(entry)

    def _known_stat(self, key: str) -> EntryStat | None:
        """`key`'s size and etag as a cached listing or a recent `info` knows them."""
        with contextlib.suppress(FileNotFoundError):
            entry = self._listed_entry(key)
            if entry is not None and entry["type"] == "file" and entry["size"] is not None:
                return EntryStat(entry["size"], entry.get("mtime"), entry.get("etag"))
        return self._looked_up(key)[1]

    def _tree(self, path: str) -> dict[str, list[Entry]] | None:
        """Every directory at or under `path` with its entries: from the cached listings if
        they hold the whole tree, else from one listing of the keys.  None: no key under it."""
        tree: dict[str, list[Entry]] = {}
        pending = [path]
        while pending:
            directory = pending.pop()
            listing = self._listed(directory)
            if listing is None:
                return self._list(path)
            tree[directory] = listing
            pending += [e["name"] for e in listing if e["type"] == "directory"]
        return tree

    def _list(self, path: str) -> dict[str, list[Entry]] | None:
        generation = self._names.generation
        children: dict[str, dict[str, Entry]] = {}
        start = len(path) + 1 if path else 0
        for key, stat in self._remote_listing(f"{path}/" if path else ""):
            parts = key[start:].split("/")
            directory = path
            for depth, part in enumerate(parts):
                name = f"{directory}/{part}" if directory else part
                if depth < len(parts) - 1:
                    entry = self._directory_info(name)
                elif stat is not None:
                    entry = self._file_info(name, stat)
                else:  # its details are asked for when wanted
                    entry = {"name": name, "size": None, "type": "file"}
                children.setdefault(directory, {})[name] = entry
                directory = name
        if not children:
            return None
        tree = {
            directory: [entries[name] for name in sorted(entries)]
            for directory, entries in children.items()
        }
        with self._names.lock:
            if generation == self._names.generation:  # no write overlapped the listing
                for directory, listing in tree.items():
                    self.dircache[directory] = listing
        return tree

    def _remote_listing(self, prefix: str) -> Iterator[tuple[str, EntryStat | None]]:
        """The keys under `prefix`, with their stats where the remote's listing gives them
        (S3's does: no HEAD per object).  Keys this store refuses are left out."""
        listing = getattr(self.store.remote, "listing", None)
        if not callable(listing):
            return ((key, None) for key in self.store.keys(prefix))
        return ((key, stat) for key, stat in listing(prefix) if not is_reserved(key))

    # -- metadata ---------------------------------------------------------------------------

    def info(self, path: str, **kwargs: Any) -> Entry:
        """A file's size, mtime and etag (the fresh local copy's, else the remote's)."""
        path = self._strip_protocol(path)
        if not path:
            return self._directory_info("")
        key = validate_key(path)
        known, stat = self._looked_up(key)
        if known:
            if stat is None:
                raise FileNotFoundError(errno.ENOENT, _MISSING, key)
            return self._file_info(key, stat)
        entry = self._listed_entry(key)
        if entry is not None:
            return self._details(entry)
        generation = self._names.generation
        try:
            stat = self.store.stat(key)
        except KeyNotFoundError:
            pass
        else:
            self._remember(key, stat, generation)
            return self._file_info(key, stat)
        if next(iter(self.store.keys(f"{key}/")), None) is not None:
            return self._directory_info(key)
        raise self._found_missing(key, generation)

    def ls(self, path: str, detail: bool = True, refresh: bool = False, **kwargs: Any) -> list[Any]:
        """The files and directories directly under `path`; a file lists as itself."""
        path = self._strip_protocol(path)
        if refresh:
            self._names.clear(path)
        listing = self._listed(path)
        if listing is None:
            tree = self._list(path)
            if tree is None:
                if path:
                    info = self.info(path)  # a file lists as itself; else FileNotFoundError
                    return [info] if detail else [info["name"]]
                return []
            listing = tree[path]
        if not detail:
            return [entry["name"] for entry in listing]
        return [self._details(entry) for entry in listing]

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
        tree = self._tree(path)
        found: dict[str, Entry] = {}
        if tree is None:
            if path and self.isfile(path):
                found[path] = self.info(path)
        else:
            if withdirs and path:
                found[path] = self._directory_info(path)
            pending = [(path, 1)]
            while pending:
                directory, depth = pending.pop()
                for entry in tree[directory]:
                    within = maxdepth is None or depth <= maxdepth
                    if entry["type"] == "directory":
                        if within and withdirs:
                            found[entry["name"]] = entry
                        if maxdepth is None or depth < maxdepth:
                            pending.append((entry["name"], depth + 1))
                    elif within:
                        found[entry["name"]] = entry
        names = sorted(found)
        if not detail:
            return names
        return {name: self._details(found[name]) for name in names}

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
            self._changed(key)
            return cast(
                IO[bytes], WriteFile(self.store.open(key, mode), lambda: self._changed(key))
            )
        if self._known_missing(key):
            raise FileNotFoundError(errno.ENOENT, _MISSING, key)
        generation = self._names.generation
        try:
            entry = self.store.open_fresh(key) or self._open_remote(key)
        except KeyNotFoundError:
            raise self._found_missing(key, generation) from None
        # fsspec's own helpers (read_block, cat_file) ask an open file for its `size`.
        reader = SharedReader(entry.stream, entry.stat.size, key, lambda: self._changed(key))
        return cast(IO[bytes], reader)

    def _open_remote(self, key: str) -> EntryReader:
        """A large object read in blocks as they are needed, else one fetch of it whole.

        A size and etag from a cached listing spare the request that would ask for them.
        """
        known = self._known_stat(key)
        partials = self.store.partials
        if known is not None and (known.size <= partials.whole_limit or not known.etag):
            return self.store.open_read(key)
        return partials.open(key, known) or self.store.open_read(key)

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

    # -- writing ----------------------------------------------------------------------------

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Write `value` as the file's bytes: remote first, then the local copy."""
        key = self._key(path)
        if mode == "create" and self.exists(key):
            raise FileExistsError(errno.EEXIST, "Key exists in the cached store", key)
        try:
            self.store.put_stream(key, io.BytesIO(value))
        finally:
            self._changed(key)

    def put_file(self, lpath: str, rpath: str, callback: Any = None, **kwargs: Any) -> None:
        """Upload the local file `lpath`, streamed: a large one never sits in memory."""
        if os.path.isdir(lpath):
            return  # directories exist only through the keys under them
        key = self._key(rpath)
        with open(lpath, "rb") as source:
            try:
                self.store.put_stream(key, source)
            finally:
                self._changed(key)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy a file as any write is made: the remote first, then the local copy.

        The source is read through the cache (a fresh local copy costs no request).  A
        directory has nothing to copy: it exists once a key lies under it.
        """
        source, target = self._strip_protocol(path1), self._key(path2)
        if self.isdir(source) and not self.isfile(source):
            return
        with self.open(source, "rb") as data:
            try:
                self.store.put_stream(target, data)
            finally:
                self._changed(target)

    def rm_file(self, path: str) -> None:
        key = self._key(path)
        try:
            removed = self.store.delete(key)
        finally:
            self._changed(key)
        if not removed and not self.isdir(key):
            raise FileNotFoundError(errno.ENOENT, _MISSING, key)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Delete files, and with `recursive` everything under a directory.

        A directory goes with its last key, so it needs no delete of its own.
        """
        for name in reversed(self.expand_path(path, recursive=recursive, maxdepth=maxdepth)):
            key = self._strip_protocol(name)
            if not key:
                continue
            try:
                removed = self.store.delete(validate_key(key))
            finally:
                self._changed(key)
            if not removed and not recursive:
                if self.isdir(key):
                    raise IsADirectoryError(errno.EISDIR, "Pass recursive=True to delete", key)
                raise FileNotFoundError(errno.ENOENT, _MISSING, key)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Nothing to do: a directory exists once a key lies under it."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Nothing to do: a directory exists once a key lies under it."""

    def rmdir(self, path: str) -> None:
        """Nothing to do: a directory goes with the last key under it."""
