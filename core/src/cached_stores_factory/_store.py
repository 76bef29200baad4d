"""The Store contract: four required methods, everything else has a working default."""

from __future__ import annotations

import abc
import contextlib
import errno
import functools
import io
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, ClassVar, NamedTuple, Self, TypeVar

from ._keys import unhashable, validate_key, validate_prefix
from ._types import ArgumentCheck
from .errors import ConfigError, EntryChangedError, KeyNotFoundError

__all__ = ["BytesReader", "EntryReader", "EntryStat", "Store", "seek_target"]

_F = TypeVar("_F", bound=Callable[..., Any])

# Methods whose first argument is a key.  Store.__init_subclass__ validates it before any
# subclass code runs, so every store, first- or third-party, gets the same key rules.
_KEYED_METHODS = (
    "get",
    "put",
    "delete",
    "stat",
    "open_read",
    "open_read_if_changed",
    "open_range",
    "put_stream",
    "put_fenced",
    "begin_change",
    "end_change",
    "fence",
    "touch",
    "__contains__",
)


class _EntryStatFields(NamedTuple):
    size: int
    modified: float | None
    etag: str | None = None
    digest: str | None = None


class EntryStat(_EntryStatFields):
    """What a store knows about one entry: a named tuple, as `os.stat_result` is.

    Immutable, compared, hashed and pickled by value; `stat._replace(modified=t)` makes a
    changed copy.  A tuple because every hit makes one, and no immutable record is cheaper
    to build.  `EntryStat(size, modified, etag=None, digest=None)`.

    Attributes:
        size: The entry's length in bytes (never negative).
        modified: When the store received this version, in seconds since the epoch, or None
            if it can't say.  Never the time of the read: policies age entries by it.
        etag: The origin's entity tag, when known (S3's ETag).
        digest: `"<algorithm>:<hex>"` of the content, when the store computed it.
    """

    __slots__ = ()

    def __new__(
        cls, size: int, modified: float | None, etag: str | None = None, digest: str | None = None
    ) -> Self:
        if size < 0:
            raise ValueError(f"'size' must be >= 0: {size}")
        return tuple.__new__(cls, (size, modified, etag, digest))


class BytesReader(io.BytesIO):
    """An entry's bytes in memory, read-only as a file opened "rb" is.

    Stores hand it out for small entries, so a write to what `open(key, "rb")` returned
    raises `io.UnsupportedOperation` instead of being quietly lost.  It seeks as a file does
    (`seek_target`): io.BytesIO would raise ValueError for some negative targets and clamp
    others to 0, so a reader's stream would behave differently by the entry's size.
    """

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        position = self.tell()
        size = 0
        if whence == io.SEEK_END:
            size = super().seek(0, io.SEEK_END)
            super().seek(position)
        return super().seek(seek_target(offset, whence, position, size))

    def writable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        raise io.UnsupportedOperation("not writable")

    def writelines(self, lines: Any) -> None:
        raise io.UnsupportedOperation("not writable")

    def truncate(self, size: int | None = None) -> int:
        raise io.UnsupportedOperation("not writable")


def seek_target(offset: int, whence: int, position: int, size: int) -> int:
    """Where `seek(offset, whence)` goes in a stream at `position` of `size` bytes.

    File semantics, shared by every stream `open(key, "rb")` returns: any target at or past
    0 is allowed (past the end, reads return b""), a negative one raises OSError(EINVAL) as
    `lseek` does, and an unknown `whence` raises ValueError as io's own streams do.
    """
    if whence == io.SEEK_CUR:
        offset += position
    elif whence == io.SEEK_END:
        offset += size
    elif whence != io.SEEK_SET:
        raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
    if offset < 0:
        raise OSError(errno.EINVAL, f"Invalid argument: seek to {offset}, before the start")
    return offset


class EntryReader(NamedTuple):
    """An open entry, `EntryReader(stream, stat)`.  `read()`, `close()` and `with` act on
    the stream.

    Attributes:
        stream: A binary stream of the entry's bytes, from the first; the reader owns it.
        stat: The entry's EntryStat, taken when it was opened.
    """

    stream: IO[bytes]
    stat: EntryStat

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stream.close()


def _validating_key(method: _F) -> _F:
    if getattr(method, "__csf_validated__", False):
        return method

    @functools.wraps(method)
    def wrapper(self: Store, key: str, *args: Any, **kwargs: Any) -> Any:
        try:
            key = validate_key(key)
        except TypeError:
            raise unhashable(key) from None
        try:
            return method(self, key, *args, **kwargs)
        except KeyNotFoundError:
            raise
        except KeyError as exc:  # what any author raises first for a missing key
            raise KeyNotFoundError(key, type(self).__name__) from exc

    wrapper.__csf_validated__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _validating_prefix(method: _F) -> _F:
    if getattr(method, "__csf_validated__", False):
        return method

    @functools.wraps(method)
    def wrapper(self: Store, prefix: str = "") -> Any:
        return method(self, validate_prefix(prefix))

    wrapper.__csf_validated__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


class Store(abc.ABC):
    """A key/value store of bytes, keyed by '/'-separated relative paths.

    Required: `get`, `put`, `delete`, `keys`.  Optional, with defaults built on those:
    `open_read` (streaming read with stat), `open_range` (a byte range of an entry),
    `put_stream` (streaming write), `stat`,
    `__contains__`, `clear`, `close`.  Keys are validated before any method here runs, in
    subclasses too, so implementations may trust them.

    A store that knows when it received an entry should report it in `stat().modified`;
    policies age entries by it.  One that can't says None, and the engine then ages the
    entry from when it stored it (unknown after a restart: expired).  A plain KeyError
    from a keyed method is taken as KeyNotFoundError.

    `fences_shared` says whether `fence`, `put_fenced`, `begin_change`, `end_change` and
    `move_fences` hold across every process that shares the store (see docs/coherence.md);
    the defaults hold nothing, and the engine then fences within its own process only.

    `native_expiry` is the number of seconds after which the store drops an entry by itself
    (Redis's `ex`), or None.

    `argument_checks` maps a constructor argument's name to a check of its value (a port's
    range, say: `whole_number`, `positive_number`).  A config's values are checked with them
    when it is read, so `csf check` reports a bad one before the store opens anything; the
    constructor calls `check_arguments` for callers that build the store in Python.
    """

    native_expiry: ClassVar[float | None] = None
    fences_shared: ClassVar[bool] = False
    argument_checks: ClassVar[Mapping[str, ArgumentCheck]] = MappingProxyType({})

    @classmethod
    def check_arguments(cls, **values: Any) -> None:
        """Raise ConfigError naming the first argument whose `argument_checks` check fails."""
        for name, value in values.items():
            problem = cls.argument_checks[name](value)
            if problem:
                raise ConfigError(f"{cls.__name__} argument {name!r}: {problem}")

    def __init_subclass__(cls, *, checks_own_keys: bool = False, **kwargs: Any) -> None:
        """Wrap the keyed methods in the key check, unless the class checks keys itself.

        A class that checks its own keys (the cached store) also keeps its KeyErrors: only a
        store author's KeyError means "missing".
        """
        super().__init_subclass__(**kwargs)
        if checks_own_keys:
            return
        for name in _KEYED_METHODS:
            if name in cls.__dict__:
                setattr(cls, name, _validating_key(cls.__dict__[name]))
        if "keys" in cls.__dict__:
            cls.keys = _validating_prefix(cls.__dict__["keys"])  # type: ignore[method-assign]

    # -- required -------------------------------------------------------------------------

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The entry's bytes; a missing key raises KeyNotFoundError (a KeyError)."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing any entry, atomically for readers."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the entry; True if there was one.  Deleting a missing key is not an error."""

    @abc.abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key that starts with `prefix`, in no particular order."""

    # -- optional, with defaults ------------------------------------------------------------

    def open_read(self, key: str) -> EntryReader:
        """Open the entry for streaming.  The default reads it whole through `get`.

        Its stat comes from the store's own `stat` if it has one, else it reports the size
        and no stored time.
        """
        data = self.get(key)
        if type(self).stat is not Store.stat:
            return EntryReader(BytesReader(data), self.stat(key))
        return EntryReader(BytesReader(data), EntryStat(size=len(data), modified=None))

    def open_read_if_changed(self, key: str, etag: str) -> EntryReader | None:
        """Open the entry unless its current version still has entity tag `etag`: then None.

        The engine uses it to revalidate an expired local copy without downloading an
        unchanged object again (S3 answers a GET with `IfNoneMatch` by 304).  The default
        cannot tell, so it always opens the entry.
        """
        return self.open_read(key)

    def open_range(
        self, key: str, start: int, end: int, *, if_match: str | None = None
    ) -> EntryReader:
        """Open bytes [start, end) of the entry (fewer past its end); `stat` is the whole entry's.

        With `if_match`, an entry whose entity tag is no longer `if_match` raises
        EntryChangedError instead, so blocks of two versions are never read as one (S3 sends
        `IfMatch`).  The default opens the whole entry through `open_read`, checks its etag,
        and skips to `start`.
        """
        if not 0 <= start <= end:
            raise ValueError(f"a range needs 0 <= start <= end, not [{start}, {end})")
        with self.open_read(key) as entry:
            if if_match is not None and entry.stat.etag != if_match:
                raise EntryChangedError(key, if_match, entry.stat.etag)
            skipped = 0
            while skipped < start and (chunk := entry.read(min(start - skipped, 1 << 20))):
                skipped += len(chunk)
            return EntryReader(BytesReader(entry.read(end - start)), entry.stat)

    def touch(self, key: str) -> EntryStat:
        """Stamp the entry as stored now, bytes unchanged, and return its new stat.

        The engine calls it when the remote confirms an expired copy is still current.  The
        default writes the entry again; a store that keeps its stored time apart from the
        bytes (a file's mtime) can do better.
        """
        etag = self.stat(key).etag
        with self.open_read(key) as entry:
            return self.put_stream(key, entry.stream, etag=etag)

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        """Store everything `stream` yields.  The default reads it whole and calls `put`.

        `etag` is the origin's entity tag; a store that keeps metadata records it.
        """
        data = stream.read()
        self.put(key, data)
        return EntryStat(size=len(data), modified=time.time(), etag=etag)

    def stat(self, key: str) -> EntryStat:
        """The entry's stat.  The default opens the entry and reads nothing."""
        with self.open_read(key) as entry:
            return entry.stat

    def __contains__(self, key: object) -> bool:
        try:
            self.stat(key)  # type: ignore[arg-type]
        except KeyNotFoundError:
            return False
        return True

    def state_dir(self) -> Path | None:
        """A private directory beside the entries where policies may keep lasting state.

        Policies use it to survive restarts and to share one budget among the processes that
        use this store.  None (the default) means the store has no local directory.
        """
        return None

    def location(self) -> tuple[str, str] | None:
        """Where the entries live, as `(space, path)`; None (the default) if the store can't say.

        `space` names one namespace of names (a directory tree, a bucket on an endpoint, a
        Redis database) and `path` the start of every name the store uses in it.  Two stores
        whose spaces are equal and one of whose paths begins the other's hold each other's
        entries: the factory refuses them as the two tiers of one cache, because evicting or
        clearing the local tier would then delete remote data.
        """
        return None

    def lease(self, key: str) -> contextlib.AbstractContextManager[object] | None:
        """A lock on `key` that every process using this store respects, or None (the default).

        The engine holds it around a fetch, so a key read by many processes at once is
        fetched once: the others wait, then find the entry.  It only saves work (fences keep
        the cache correct), so entering it may give up with StoreError after a bounded wait.
        A lease must not outlive a holder that died: a lock the kernel drops, or a timeout
        the holder renews.
        """
        return None

    # -- fences: a fetch stores its bytes only if the key did not change meanwhile ----------

    def fence(self, key: str) -> str | None:
        """The key's fence token, read before a fetch asks the remote; None while it changes.

        `put_fenced` stores the fetched bytes only if the fence is still this token, so a
        fetch that overlapped a change (a write, a delete, an invalidation, in any process
        sharing this store) can never store over it.  None means a change of the key is
        running (`begin_change` without its `end_change`): the fetch stores nothing.

        The defaults fence nothing across processes (`fences_shared` is False): the engine
        then fences fetches within its own process only.
        """
        return ""

    def put_fenced(
        self, key: str, stream: IO[bytes], *, etag: str | None, fence: str
    ) -> EntryStat | None:
        """`put_stream`, atomically only if the key's fence is still `fence`; else None.

        Nothing is stored when the fence moved.  The default stores unconditionally.
        """
        return self.put_stream(key, stream, etag=etag)

    def begin_change(self, key: str, *, hold: float) -> tuple[bool, str]:
        """A change of the key begins: drop the copy and mark the key changing.

        Atomically: the copy goes, the fence moves, and `fence` answers None until every
        change begun has ended, or until `hold` seconds after the last one began (a changer
        that died never ends).  Returns whether a copy went, and the mark to give
        `end_change`.  The default deletes the copy.
        """
        return self.delete(key), ""

    def end_change(self, key: str, mark: str) -> str | None:
        """A change of the key ended: drop any copy stored meanwhile, and move the fence.

        Returns the fence for the changer's own `put_fenced`, or None when no copy may be
        stored: another change of the key overlapped this one, here or in another process
        (which version the remote kept is then unknown), or the key's marks were lost or
        lapsed since `begin_change` gave `mark` (others may have changed the key meanwhile).
        The default deletes the copy.
        """
        self.delete(key)
        return ""

    def move_fences(self) -> None:  # noqa: B027 - optional, a no-op by default
        """Move every key's fence at once: no token handed out before is admitted again.

        The cached store's `clear` calls it before it drops the copies, so a fetch in flight
        anywhere stores nothing afterwards, even of a key that had no copy for it to find.
        Atomically with `put_fenced`: one that runs after this returns refuses every earlier
        token.  Copies stay, and so do change marks, but a change running now stores no copy
        when it ends (`end_change` answers None): a clear follows a change made outside the
        cache, which may have overlapped it.  The default does nothing: the
        defaults fence nothing across processes, and the engine refuses its own process's
        fetches itself.  A store with `fences_shared` must move them (the conformance kit's
        FenceConformance checks it).
        """

    def __iter__(self) -> Iterator[str]:
        """Iterating a store yields its keys, as iterating a dict does."""
        return self.keys()

    def clear(self) -> int:
        """Delete every entry; return how many went."""
        return sum(1 for key in list(self.keys()) if self.delete(key))

    def close(self) -> None:  # noqa: B027 - optional, a no-op by default
        """Release connections and handles.  Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
