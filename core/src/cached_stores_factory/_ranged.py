"""Ranged reads: a large object that is not cached yet is read in blocks, as the reader needs them.

A Parquet reader reads a file's footer, then the columns it wants; a cache that downloads the
whole object first makes it wait for every byte.  Here a reader of a cold object larger than
WHOLE_LIMIT fetches the BLOCK_SIZE blocks its reads touch with ranged reads of the remote
(`Store.open_range`),
and each block is kept in the local store, so a later read of the same bytes makes no request.
Once every block is present the blocks become one ordinary local entry.

In the local store, for key K read at one version (etag E, size S, block size B):

    .csf-partial/<hash of K>               the manifest: JSON {"etag": E, "size": S, "block": B,
                                           "fence": F}
    .csf-partial/<hash of K, E, S, B>/<i>  block i, bytes [i*B, (i+1)*B) of that version

Every block is a policy entry of its own, counted by its bytes (a byte budget sees exactly the
bytes held; a depth counts blocks), so the policy may evict one block and a later read fetches
it again.  The manifest is bookkeeping, not a policy entry; its age is the partial entry's age
for the policy's freshness.  Each block is fetched with `if_match=E`: a block of a changed
object raises EntryChangedError and drops the partial entry, never splicing two versions.
F is K's fence, read before E was asked for: a manifest is used only while K's fence is still
F, so a write, delete, invalidation or clear since (here or in another process, whether it
began before or after the manifest was stored) retires it, as it retires a whole copy.

Ranged reads use the cached store through `Engine` alone: what they may do, named.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import threading
import time
import weakref
from typing import IO, TYPE_CHECKING, NamedTuple, cast

from ._fetch import own_copy
from ._keys import RESERVED_ROOT as ROOT
from ._log import lazy_logger
from ._store import EntryReader, EntryStat, seek_target
from .errors import CorruptEntryError, EntryChangedError, KeyNotFoundError, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from _typeshed import WriteableBuffer

__all__ = ["BLOCK_SIZE", "READAHEAD", "WHOLE_LIMIT", "Engine", "PartialEntries"]

log = lazy_logger("cached_stores_factory")

MiB = 1024 * 1024
BLOCK_SIZE = 1 * MiB
"""Blocks are small so a read fetches little it does not need; missing blocks in a row are
fetched with one request, so a smaller block adds no requests to a long read.  The block sizes
compared on Parquet files are in docs/performance.md."""

WHOLE_LIMIT = 16 * MiB
"""Objects up to this size are read whole, in one request: a ranged read cannot save much of
so few blocks, and reading it whole costs one request, not one per block."""

READAHEAD = 4
"""Blocks fetched ahead of a reader that reads on from where it stopped, at most."""

_MAX_ATTEMPTS = 8
_LOCAL_FAILURES = (StoreError, OSError)


class Engine(NamedTuple):
    """What ranged reads may do with the cached store they serve, and nothing else.

    The cached store fills it with the parts that know each answer: its LocalTier for the
    local store and the policy, its coordinator's flights for the first stat.  Keys are the
    object's (`key`) or the local entries of its partial entry (manifests and blocks).
    """

    usable: Callable[[str], bool]
    """Whether the local store is in use for `key` now: no outage, not bypassed."""
    bypass: Callable[[str, Exception | None], None]
    """Serve `key` from the remote until its local entries can go (an error starts an outage)."""
    fence: Callable[[str], str | None]
    """`key`'s fence, read before any block is fetched; None: join nothing."""
    admits: Callable[[int], bool]
    """Whether the policy would keep an entry of this many bytes."""
    is_fresh: Callable[[str, EntryStat], bool]
    """Whether the policy counts a local entry (a manifest) fresh."""
    open_local: Callable[[str], EntryReader]
    """A local entry: a manifest, a block, the joined object; KeyNotFoundError if missing."""
    entry_stat: Callable[[str], EntryStat | None]
    """A local entry's stat as stored, etag included; None if missing or the store failed."""
    put_local: Callable[[str, bytes], None]
    """Store bookkeeping the policy does not track: a manifest."""
    keep: Callable[[str, IO[bytes], str], Sequence[str]]
    """Store a block with its etag, tell the policy: the keys evicted (the block too, if so)."""
    insert: Callable[[str, IO[bytes], str, str], EntryStat | None]
    """Store the joined object if the fence still holds, tell the policy; None if it moved."""
    discard: Callable[[Iterable[str], Iterable[str]], None]
    """Delete policy-tracked entries (blocks), after untracked ones (manifests); errors raise."""
    first_stat: Callable[[str], EntryStat | None]
    """The remote's stat of `key`, asked once for everyone opening it meanwhile, or the
    answer of a whole-object fetch of it in flight: None when that kept a local copy."""
    read_range: Callable[[str, int, int, str], EntryReader]
    """Bytes [start, end) of the remote's version `etag`, counted as a fetch;
    EntryChangedError if the remote holds another version."""
    read_whole: Callable[[str], EntryReader]
    """The whole object as the cached store reads it: a fresh copy, else one fetch keeping it."""


def _digest(*parts: object) -> str:
    import hashlib  # here, like json below: a cold start never reads in blocks

    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:40]


@dataclasses.dataclass(frozen=True, slots=True, weakref_slot=True)
class Version:
    """One version of one object, and where its blocks live in the local store."""

    key: str
    etag: str
    size: int
    block: int

    @property
    def blocks(self) -> int:
        return -(-self.size // self.block)

    @property
    def manifest(self) -> str:
        return manifest_key(self.key)

    def block_key(self, index: int) -> str:
        return f"{ROOT}/{_digest(self.key, self.etag, self.size, self.block)}/{index}"

    def block_keys(self) -> Iterator[str]:
        return (self.block_key(index) for index in range(self.blocks))

    def span(self, index: int) -> tuple[int, int]:
        start = index * self.block
        return start, min(start + self.block, self.size)

    def dump(self, fence: str | None) -> bytes:
        """The manifest: this version, known current while the key's fence is `fence`."""
        import json

        fields = {"etag": self.etag, "size": self.size, "block": self.block, "fence": fence}
        return json.dumps(fields).encode()

    @classmethod
    def load(cls, key: str, data: bytes) -> tuple[Version, str | None]:
        """A manifest's version, and the fence it holds while (None: never)."""
        import json

        fields = json.loads(data)
        version = cls(key, str(fields["etag"]), int(fields["size"]), int(fields["block"]))
        fence = fields.get("fence")
        if version.size < 0 or version.block <= 0 or not isinstance(fence, str | None):
            raise ValueError(f"a partial entry's manifest is damaged: {fields!r}")
        return version, fence


def manifest_key(key: str) -> str:
    return f"{ROOT}/{_digest(key)}"


class _Flight:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class _Partial:
    """One version of one object read in ranges by this process's readers, which share it."""

    def __init__(self, version: Version, *, new: bool, fence: str | None) -> None:
        self.version = version
        self.fence = fence  # the key's fence before any block was fetched: the join's
        self.lock = threading.Lock()
        self.present: set[int] = set()  # blocks known to be in the local store
        self.probed = new  # a new entry has no blocks: nothing to look for
        self.flights: dict[int, _Flight] = {}
        self.spare: dict[int, bytes] = {}  # blocks the local store could not keep
        self.superseded = False  # written, deleted or changed: keep nothing more
        self.joining = False  # the blocks are being stored as one local entry
        self.whole = False  # ... and now are one: read that entry
        self.modified: float | None = time.time()  # when this version was known current


class PartialEntries:
    """The partial entries of one cached store, and the readers that fill them."""

    def __init__(
        self, engine: Engine, *, block_size: int = BLOCK_SIZE, whole_limit: int = WHOLE_LIMIT
    ) -> None:
        self._engine = engine
        self.block_size = block_size
        self.whole_limit = whole_limit
        self._lock = threading.Lock()
        self._partials: weakref.WeakValueDictionary[str, _Partial] = weakref.WeakValueDictionary()

    # -- opening ----------------------------------------------------------------------------

    def open(self, key: str, stat: EntryStat | None = None) -> EntryReader | None:
        """A reader of `key` that fetches only the blocks it reads.

        None when the object is better read whole: it is small, the remote gives no etag to
        keep versions apart, the policy would not keep a block, or a whole-object read of it
        just kept a local copy.  A missing key raises KeyNotFoundError.  `stat`, the remote's
        stat when the caller has it (from a listing), spares the request that asks for it.
        """
        partial = self._find(key)
        if partial is None:
            engine = self._engine
            fence = engine.fence(key)  # before any block: see _make_whole
            if stat is None:
                stat = engine.first_stat(key)
            if (
                stat is None
                or stat.size <= self.whole_limit
                or not stat.etag
                or not engine.admits(self.block_size)
            ):
                return None
            partial = self._begin(Version(key, stat.etag, stat.size, self.block_size), fence)
        version = partial.version
        stat = EntryStat(size=version.size, modified=partial.modified, etag=version.etag)
        return EntryReader(cast(IO[bytes], RangedFile(self, partial)), stat)

    def stat(self, key: str) -> EntryStat | None:
        """The fresh partial entry's size and etag, or None: no request is made."""
        partial = self._find(key)
        if partial is None:
            return None
        version = partial.version
        return EntryStat(size=version.size, modified=partial.modified, etag=version.etag)

    def _find(self, key: str) -> _Partial | None:
        with self._lock:
            partial = self._partials.get(key)
        engine = self._engine
        if (
            partial is not None
            and not (partial.superseded or partial.whole or partial.fence is None)
            and engine.fence(key) == partial.fence  # nothing changed the key since it began
        ):
            return partial
        if not engine.usable(key):
            return None  # read whole, uncached, while the local store is out or behind
        try:
            with engine.open_local(manifest_key(key)) as entry:
                data, stat = entry.read(), entry.stat
            version, made_under = Version.load(key, data)
        except (ValueError, KeyError, TypeError) as exc:  # KeyNotFoundError too
            if not isinstance(exc, KeyNotFoundError):
                self.forget(key)  # a damaged manifest: start again
            return None
        except _LOCAL_FAILURES:
            log.warning("the local store failed; reading %r whole", key, exc_info=True)
            return None
        if (
            not engine.is_fresh(manifest_key(key), stat)
            or (fence := engine.fence(key)) is None
            or fence != made_under  # the key changed since the manifest was made, or is changing
        ):
            self.forget(key)
            return None
        partial = self._register(version, new=False, fence=fence)
        partial.modified = stat.modified
        return partial

    def _begin(self, version: Version, fence: str | None) -> _Partial:
        try:
            self._engine.put_local(version.manifest, version.dump(fence))
        except _LOCAL_FAILURES:
            log.warning("the local store failed; %r is read uncached", version.key, exc_info=True)
        return self._register(version, new=True, fence=fence)

    def _register(self, version: Version, *, new: bool, fence: str | None) -> _Partial:
        with self._lock:
            partial = self._partials.get(version.key)
            if partial is None or partial.version != version or partial.superseded or partial.whole:
                partial = _Partial(version, new=new, fence=fence)
                self._partials[version.key] = partial
            return partial

    # -- forgetting -------------------------------------------------------------------------

    def forget(self, key: str) -> None:
        """Drop `key`'s partial entry: its readers keep nothing more, its blocks go.

        The engine calls it before every write or delete of `key` and on `invalidate`.
        """
        with self._lock:
            partial = self._partials.pop(key, None)
        versions = set()
        if partial is not None:
            partial.superseded = True
            versions.add(partial.version)
        engine = self._engine
        if not engine.usable(key):
            engine.bypass(key, None)  # its blocks go before the local store serves it again
            return
        try:
            with engine.open_local(manifest_key(key)) as entry:
                data: bytes | None = entry.read()
        except KeyNotFoundError:
            data = None
        except _LOCAL_FAILURES as exc:
            engine.bypass(key, exc)
            return
        if data is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                versions.add(Version.load(key, data)[0])
        blocks = (block for version in versions for block in version.block_keys())
        try:  # no manifest, nothing to delete: one local request, not two
            engine.discard(blocks, () if data is None else (manifest_key(key),))
        except _LOCAL_FAILURES as exc:
            engine.bypass(key, exc)

    # -- fetching ---------------------------------------------------------------------------

    def ensure(self, partial: _Partial, first: int, last: int, ahead: int = 0) -> None:
        """Make blocks first..last present, fetching the missing ones (and up to `ahead` more
        after them) in as few ranged reads as possible; each block is fetched once however
        many readers want it."""
        for _ in range(_MAX_ATTEMPTS):
            claimed, waits = self._claim(partial, first, last, ahead)
            if claimed:
                self._lead(partial, claimed)
            for flight in waits:
                flight.done.wait()
                if flight.error is not None:
                    raise own_copy(flight.error) from flight.error
            with partial.lock:
                held = partial.present | partial.spare.keys()
                if partial.whole or all(index in held for index in range(first, last + 1)):
                    return
        key = partial.version.key
        raise StoreError(f"the local store drops the blocks of {key!r} as soon as they are stored")

    @staticmethod
    def _claim(
        partial: _Partial, first: int, last: int, ahead: int
    ) -> tuple[list[int], list[_Flight]]:
        """The missing blocks this reader fetches, and the fetches of others it waits for."""
        claimed: list[int] = []
        waits: list[_Flight] = []
        with partial.lock:
            if partial.superseded:
                raise EntryChangedError(partial.version.key, partial.version.etag)
            if partial.whole:
                return claimed, waits  # the blocks became one local entry; read that
            for index in range(first, last + 1):
                if index in partial.present or index in partial.spare:
                    continue
                flight = partial.flights.get(index)
                if flight is not None:
                    waits.append(flight)
                else:
                    partial.flights[index] = _Flight()
                    claimed.append(index)
            for index in range(last + 1, min(last + 1 + ahead, partial.version.blocks)):
                if index in partial.present or index in partial.flights:
                    break
                partial.flights[index] = _Flight()
                claimed.append(index)
        return claimed, waits

    def _lead(self, partial: _Partial, claimed: list[int]) -> None:
        error: BaseException | None = None
        try:
            self._fetch(partial, claimed)
        except Exception as exc:
            error = exc
            raise
        except BaseException:
            error = StoreError(f"the fetch of {partial.version.key!r} was interrupted")
            raise
        finally:
            with partial.lock:
                for index in claimed:
                    flight = partial.flights.pop(index)
                    flight.error = error
                    flight.done.set()
            if error is None:
                self._make_whole_if_complete(partial)

    def _fetch(self, partial: _Partial, claimed: list[int]) -> None:
        version = partial.version
        missing = claimed if partial.probed else [i for i in claimed if not self._probe(partial, i)]
        runs: list[list[int]] = []
        for index in missing:
            if runs and runs[-1][-1] == index - 1:
                runs[-1].append(index)
            else:
                runs.append([index])
        for run in runs:
            start, end = version.span(run[0])[0], version.span(run[-1])[1]
            try:
                entry = self._engine.read_range(version.key, start, end, version.etag)
            except EntryChangedError:
                self.forget(version.key)
                raise
            except KeyNotFoundError as exc:  # deleted since the read began
                self.forget(version.key)
                raise EntryChangedError(version.key, version.etag) from exc
            with entry:
                if entry.stat.etag != version.etag or entry.stat.size != version.size:
                    self.forget(version.key)
                    raise EntryChangedError(version.key, version.etag, entry.stat.etag)
                for index in run:
                    low, high = version.span(index)
                    data = _read_exactly(entry.stream, high - low)
                    if len(data) != high - low:
                        raise StoreError(
                            f"{version.key!r}: the remote sent {len(data)} of the "
                            f"{high - low} bytes of a range"
                        )
                    self._keep(partial, index, data)

    def _probe(self, partial: _Partial, index: int) -> bool:
        if self._engine.entry_stat(partial.version.block_key(index)) is None:
            return False
        with partial.lock:
            partial.present.add(index)
        return True

    def _keep(self, partial: _Partial, index: int, data: bytes) -> None:
        version = partial.version
        block = version.block_key(index)
        try:
            victims = self._engine.keep(block, io.BytesIO(data), version.etag)
        except Exception:
            log.warning("caching a block of %r failed; serving it uncached", version.key)
            with partial.lock:
                partial.spare[index] = data
            return
        with partial.lock:
            superseded = partial.superseded
            if not superseded:
                partial.present.add(index)
            if superseded or block in victims:
                partial.spare[index] = data  # this reader still gets it
        if superseded and block not in victims:
            self._engine.discard((block,), ())
        evicted = {victim for victim in victims if victim.startswith(ROOT + "/")}
        if evicted:
            with partial.lock:
                partial.present -= {i for i in partial.present if version.block_key(i) in evicted}

    def _make_whole_if_complete(self, partial: _Partial) -> None:
        """Every block is here: store them as one local entry, then drop them.

        Fenced with the key's fence from before the first block was fetched: every block was
        read with If-Match on one version, so a change anywhere since then refuses the join.
        """
        version, engine = partial.version, self._engine
        with partial.lock:
            if partial.joining or partial.superseded or len(partial.present) < version.blocks:
                return
            partial.joining = True
        if partial.fence is None or not engine.admits(version.size):
            return  # the blocks stay; each one is within the policy's bounds
        try:
            blocks = cast(IO[bytes], _Blocks(engine.open_local, version))
            stored = engine.insert(version.key, blocks, version.etag, partial.fence)
        except Exception:
            log.warning("joining the blocks of %r failed; they stay blocks", version.key)
            return
        if stored is None:  # the key changed since: these blocks are an older version
            self.forget(version.key)
            return
        if partial.superseded:  # a write overlapped: its copy is the one to keep
            engine.discard((version.key,), ())
        self._become_whole(partial)

    def _become_whole(self, partial: _Partial) -> None:
        """The object is one local entry now: readers read that; its blocks and manifest go."""
        version = partial.version
        with partial.lock:
            partial.whole = partial.joining = True
            partial.present.clear()
        with contextlib.suppress(*_LOCAL_FAILURES):
            self._engine.discard(version.block_keys(), (version.manifest,))

    # -- reading ----------------------------------------------------------------------------

    def open_whole(self, partial: _Partial) -> IO[bytes]:
        """The whole object, through the engine (a fresh local copy, else one fetch that keeps
        it), for a reader that turned out to read it all; its blocks are then dropped."""
        version = partial.version
        try:
            entry = self._engine.read_whole(version.key)
        except KeyNotFoundError as exc:  # deleted since the read began
            self.forget(version.key)
            raise EntryChangedError(version.key, version.etag) from exc
        etag = entry.stat.etag
        if etag is None:  # a local store may report the etag with `stat` only
            stored = self._engine.entry_stat(version.key)
            etag = None if stored is None else stored.etag
        if entry.stat.size != version.size or etag not in (None, version.etag):
            entry.close()
            self.forget(version.key)
            raise EntryChangedError(version.key, version.etag, etag)
        self._become_whole(partial)
        return entry.stream

    def read(self, partial: _Partial, offset: int, buffer: memoryview, ahead: int) -> int:
        """Fill `buffer` with the bytes at `offset` (fewer only at the end of the object)."""
        version = partial.version
        count = max(0, min(len(buffer), version.size - offset))
        if not count:
            return 0
        first, last = offset // version.block, (offset + count - 1) // version.block
        for _ in range(_MAX_ATTEMPTS):
            if partial.whole and _read_whole(self._engine, partial, offset, buffer[:count]):
                return count
            self.ensure(partial, first, last, ahead)
            if _read_blocks(self._engine, partial, offset, buffer[:count]):
                return count
        raise StoreError(f"the blocks of {version.key!r} keep disappearing from the local store")


def _read_whole(engine: Engine, partial: _Partial, offset: int, view: memoryview) -> bool:
    """Fill `view` from the whole local copy; False if it went (blocks again)."""
    try:
        entry = engine.open_local(partial.version.key)
    except KeyNotFoundError:
        with partial.lock:
            partial.whole = partial.joining = False  # evicted already: blocks again
        return False
    with entry:
        if entry.stat.etag not in (None, partial.version.etag):
            raise EntryChangedError(partial.version.key, partial.version.etag, entry.stat.etag)
        entry.stream.seek(offset)
        return _fill(entry.stream, view) == len(view)


def _read_blocks(engine: Engine, partial: _Partial, offset: int, view: memoryview) -> bool:
    """Fill `view` from the local blocks; False if one is missing (it is fetched again)."""
    version = partial.version
    done = 0
    while done < len(view):
        index = (offset + done) // version.block
        low, high = version.span(index)
        within = offset + done - low
        want = min(high - low - within, len(view) - done)
        with partial.lock:
            spare = partial.spare.get(index)
        if spare is not None:
            view[done : done + want] = spare[within : within + want]
        else:
            block = version.block_key(index)
            try:
                with engine.open_local(block) as entry:
                    entry.stream.seek(within)
                    if _fill(entry.stream, view[done : done + want]) != want:
                        raise CorruptEntryError(f"block {block!r} is short")
            except (KeyNotFoundError, CorruptEntryError) as exc:
                if isinstance(exc, CorruptEntryError):
                    log.warning("a block of %r is damaged; fetching it again", version.key)
                    engine.discard((block,), ())
                with partial.lock:
                    partial.present.discard(index)
                return False
        done += want
    return True


class RangedFile(io.RawIOBase):
    """A read-only, seekable file over one partial entry; reads fetch the blocks they need.

    Every read returns all the bytes asked for (fewer only at the end), as a regular file
    does, so readers that treat a short read as the end (pyarrow) read correctly.
    """

    def __init__(self, entries: PartialEntries, partial: _Partial) -> None:
        super().__init__()
        self._entries = entries
        self._partial = partial
        self.size = partial.version.size
        self.name = partial.version.key
        self._position = 0
        self._ahead = 0  # blocks to fetch ahead; grows while reads run on, one after another
        self._next = -1  # where a read that runs on would start (none yet)
        self._from_start = True  # every read so far ran on from offset 0
        self._whole: IO[bytes] | None = None  # the whole object, once reading it all

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        with memoryview(buffer) as view:
            flat = view.cast("B")
            if self._position == self._next:
                # No read-ahead from the start: past the first block the rest is read whole.
                self._ahead = 0 if self._from_start else min(max(1, 2 * self._ahead), READAHEAD)
            else:
                self._ahead = 0
                self._from_start = self._next == -1 and self._position == 0
            block = self._partial.version.block
            if self._whole is None and self._from_start and self._position + len(flat) > block:
                # Read on from the start past the first block: it is read whole (CSV, JSON,
                # a copy), and one request for the rest beats one per block.
                self._whole = self._entries.open_whole(self._partial)
            if self._whole is not None:
                self._whole.seek(self._position)
                count = _fill(self._whole, flat[: max(0, self.size - self._position)])
            else:
                count = self._entries.read(self._partial, self._position, flat, self._ahead)
        self._position += count
        self._next = self._position
        return count

    def close(self) -> None:
        if self._whole is not None:
            self._whole.close()
            self._whole = None
        super().close()

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self.size - self._position)
        buffer = bytearray(min(size, max(0, self.size - self._position)))
        count = self.readinto(buffer)
        return bytes(buffer[:count])

    def readall(self) -> bytes:
        return self.read(-1)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        self._position = seek_target(offset, whence, self._position, self.size)
        return self._position

    def tell(self) -> int:
        return self._position

    def __repr__(self) -> str:
        return f"<ranged file {self.name!r} size={self.size}>"


class _Blocks(io.RawIOBase):
    """A version's blocks, read one after another from the local store: the whole object."""

    def __init__(self, open_local: Callable[[str], EntryReader], version: Version) -> None:
        super().__init__()
        self._open_local = open_local
        self._version = version
        self._index = 0
        self._current: IO[bytes] | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        with memoryview(buffer) as view:
            while self._index < self._version.blocks:
                if self._current is None:
                    entry = self._open_local(self._version.block_key(self._index))
                    self._current = entry.stream
                chunk = self._current.read(len(view))
                if chunk:
                    view[: len(chunk)] = chunk
                    return len(chunk)
                self._current.close()
                self._current = None
                self._index += 1
        return 0

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        super().close()


def _fill(stream: IO[bytes], view: memoryview) -> int:
    """Read into `view` until it is full or the stream ends; how many bytes came."""
    done = 0
    while done < len(view):
        chunk = stream.read(len(view) - done)
        if not chunk:
            break
        view[done : done + len(chunk)] = chunk
        done += len(chunk)
    return done


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    parts: list[bytes] = []
    left = size
    while left > 0 and (chunk := stream.read(left)):
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)
