"""Ranged reads over memory stores: blocks fetched once, kept, joined; changed objects refused.

Blocks here are 1 KiB and objects over 4 KiB are read in ranges, so the state space is small
enough for hypothesis.  S3's own ranged GETs are tested in plugins/s3.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import IO, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cached_stores_factory import (
    CachedStore,
    CachePolicy,
    EntryReader,
    EntryStat,
    MemoryStore,
    _coordinator,
    _ranged,
)
from cached_stores_factory._ranged import ROOT
from cached_stores_factory.errors import (
    CorruptEntryError,
    EntryChangedError,
    KeyNotFoundError,
    RemoteError,
    StoreError,
)

BLOCK = 1024
WAIT = 10.0


class VersionedRemote(MemoryStore):
    """A memory remote whose entries carry an etag (their content's hash), counting requests."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.ranges: list[tuple[int, int]] = []
        self.gate: threading.Event | None = None
        self.failures = 0  # the next this many ranged reads fail

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        data = stream.read()
        return super().put_stream(key, io.BytesIO(data), etag=hashlib.md5(data).hexdigest())

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, io.BytesIO(data))

    def open_read(self, key: str) -> EntryReader:
        self.calls["open_read"] += 1
        return super().open_read(key)

    def stat(self, key: str) -> EntryStat:
        self.calls["stat"] += 1
        return super().stat(key)

    def open_range(
        self, key: str, start: int, end: int, *, if_match: str | None = None
    ) -> EntryReader:
        self.calls["open_range"] += 1
        self.ranges.append((start, end))
        if self.gate is not None:
            assert self.gate.wait(WAIT)
        if self.failures:
            self.failures -= 1
            raise StoreError("the remote broke off")
        # The default, built on open_read, is what is under test; don't count it twice.
        self.calls["open_read"] -= 1
        return super().open_range(key, start, end, if_match=if_match)


class Recording(CachePolicy):
    """No bounds; records the sizes the engine reports, and evicts what `evict` names."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.evict: list[str] = []

    def on_insert(self, key: str, stat: EntryStat) -> Sequence[str]:
        self.sizes[key] = stat.size
        victims, self.evict = self.evict, []
        return victims

    def on_delete(self, key: str) -> None:
        self.sizes.pop(key, None)


def cached(
    remote: VersionedRemote, policy: CachePolicy | None = None, *, local: MemoryStore | None = None
) -> CachedStore:
    store = CachedStore(MemoryStore() if local is None else local, remote, policy)
    store.partials.block_size = BLOCK
    store.partials.whole_limit = 4 * BLOCK
    return store


def data_of(size: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


def open_ranged(store: CachedStore, key: str) -> IO[bytes]:
    entry = store.partials.open(key)
    assert entry is not None, "expected a ranged reader"
    return entry.stream


def blocks_held(store: CachedStore) -> list[str]:
    return sorted(key for key in store.local.keys(ROOT + "/") if key.count("/") == 2)


def test_a_read_fetches_only_the_blocks_it_needs_and_keeps_them() -> None:
    remote = VersionedRemote()
    body = data_of(10 * BLOCK + 100)
    remote.put("big", body)
    store = cached(remote)
    reader = open_ranged(store, "big")
    assert reader.size == len(body)  # type: ignore[attr-defined]
    reader.seek(-8, 2)
    assert reader.read(8) == body[-8:]
    reader.seek(3 * BLOCK + 10)
    assert reader.read(BLOCK) == body[3 * BLOCK + 10 : 4 * BLOCK + 10]
    assert remote.ranges == [(10 * BLOCK, len(body)), (3 * BLOCK, 5 * BLOCK)]
    assert remote.calls["open_read"] == 0 and len(blocks_held(store)) == 3

    again = open_ranged(store, "big")  # a new reader of the same blocks: no request
    calls = dict(remote.calls)
    again.seek(3 * BLOCK)
    assert again.read(2 * BLOCK) == body[3 * BLOCK : 5 * BLOCK]
    assert dict(remote.calls) == calls
    assert store.stat("big").size == len(body) and dict(remote.calls) == calls


def test_small_objects_and_objects_without_an_etag_are_read_whole() -> None:
    remote = VersionedRemote()
    remote.put("small", data_of(4 * BLOCK))
    store = cached(remote)
    assert store.partials.open("small") is None
    MemoryStore.put(remote, "unversioned", data_of(8 * BLOCK))  # no etag
    assert store.partials.open("unversioned") is None
    with pytest.raises(KeyNotFoundError):
        store.partials.open("missing")


def test_all_blocks_present_make_the_entry_whole() -> None:
    remote = VersionedRemote()
    body = data_of(6 * BLOCK - 1)
    remote.put("big", body)
    store = cached(remote)
    reader = open_ranged(store, "big")
    for index in reversed(range(6)):  # backwards: never "from the start"
        reader.seek(index * BLOCK)
        assert reader.read(BLOCK) == body[index * BLOCK : (index + 1) * BLOCK]
    assert store.local.get("big") == body
    assert blocks_held(store) == [] and list(store.local.keys(ROOT)) == []
    reader.seek(0)
    assert reader.read() == body  # the open reader goes on, from the whole entry
    entry = store.open_fresh("big")
    assert entry is not None and entry.read() == body


def test_reading_on_from_the_start_reads_the_rest_whole() -> None:
    remote = VersionedRemote()
    body = data_of(20 * BLOCK)
    remote.put("big", body)
    store = cached(remote)
    reader = open_ranged(store, "big")
    chunks = []
    while chunk := reader.read(300):
        chunks.append(chunk)
    assert b"".join(chunks) == body
    assert remote.ranges == [(0, BLOCK)] and remote.calls["open_read"] == 1
    assert store.local.get("big") == body and blocks_held(store) == []


def test_a_changed_object_is_never_spliced() -> None:
    remote = VersionedRemote()
    old, new = data_of(10 * BLOCK, seed=1), data_of(10 * BLOCK, seed=2)
    remote.put("big", old)
    store = cached(remote)
    reader = open_ranged(store, "big")
    reader.seek(5 * BLOCK)
    assert reader.read(10) == old[5 * BLOCK : 5 * BLOCK + 10]
    remote.put("big", new)  # changed behind the cache's back
    reader.seek(2 * BLOCK)
    with pytest.raises(EntryChangedError, match="changed while it was read"):
        reader.read(10)
    assert blocks_held(store) == []  # the old version's blocks are gone
    fresh = open_ranged(store, "big")
    fresh.seek(5 * BLOCK)
    assert fresh.read(10) == new[5 * BLOCK : 5 * BLOCK + 10]


def test_a_write_through_the_cache_drops_the_blocks_and_stops_old_readers() -> None:
    remote = VersionedRemote()
    old, new = data_of(10 * BLOCK, seed=3), data_of(12 * BLOCK, seed=4)
    remote.put("big", old)
    store = cached(remote)
    reader = open_ranged(store, "big")
    reader.seek(BLOCK)
    reader.read(10)
    store.put_stream("big", io.BytesIO(new))
    assert blocks_held(store) == []
    reader.seek(7 * BLOCK)
    with pytest.raises(EntryChangedError):
        reader.read(10)
    assert store.open_read("big").read() == new


def test_an_object_deleted_while_read_in_ranges_is_a_changed_one() -> None:
    remote = VersionedRemote()
    remote.put("big", data_of(10 * BLOCK))
    store = cached(remote)
    reader = open_ranged(store, "big")
    reader.read(10)
    MemoryStore.delete(remote, "big")  # behind the cache's back
    reader.seek(5 * BLOCK)
    with pytest.raises(EntryChangedError, match="changed while it was read"):
        reader.read(10)
    assert blocks_held(store) == []


class HookedRemote(VersionedRemote):
    """A remote that runs `before_put` once, just before its next write applies."""

    before_put: Callable[[], None] | None = None

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        hook, self.before_put = self.before_put, None
        if hook is not None:
            hook()
        return super().put_stream(key, stream, etag=etag)


def test_a_partial_entry_begun_during_another_processes_write_is_not_used_after_it() -> None:
    """A reader in another process stores the old version's manifest and a block while a write
    runs (after the write dropped the partial entry): a read after the write never uses them."""
    remote = HookedRemote()
    old, new = data_of(10 * BLOCK, seed=5), data_of(10 * BLOCK, seed=6)
    remote.put("big", old)
    local = MemoryStore()
    writer, reader, later = (cached(remote, local=local) for _ in range(3))  # three processes

    def read_old_block() -> None:
        entry = open_ranged(reader, "big")
        entry.seek(5 * BLOCK)
        assert entry.read(10) == old[5 * BLOCK : 5 * BLOCK + 10]

    remote.before_put = read_old_block
    writer.put_stream("big", io.BytesIO(new))
    fresh = open_ranged(later, "big")
    fresh.seek(5 * BLOCK)
    assert fresh.read(10) == new[5 * BLOCK : 5 * BLOCK + 10]


def test_a_reader_opened_after_another_processes_write_reads_the_new_version() -> None:
    """Even while a reader of the old version stays open in this process."""
    remote = VersionedRemote()
    old, new = data_of(10 * BLOCK, seed=7), data_of(10 * BLOCK, seed=8)
    remote.put("big", old)
    local = MemoryStore()
    reader, writer = cached(remote, local=local), cached(remote, local=local)
    first = open_ranged(reader, "big")
    first.seek(5 * BLOCK)
    assert first.read(10) == old[5 * BLOCK : 5 * BLOCK + 10]
    writer.put_stream("big", io.BytesIO(new))
    again = open_ranged(reader, "big")
    again.seek(5 * BLOCK)
    assert again.read(10) == new[5 * BLOCK : 5 * BLOCK + 10]


class BookkeepingCounter(MemoryStore):
    """A local store that counts the requests for ranged-read bookkeeping (keys under ROOT)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def open_read(self, key: str) -> EntryReader:
        self.calls["open_read"] += key.startswith(ROOT)
        return super().open_read(key)

    def delete(self, key: str) -> bool:
        self.calls["delete"] += key.startswith(ROOT)
        return super().delete(key)


def test_a_write_or_delete_of_a_key_never_read_in_blocks_costs_one_local_lookup() -> None:
    """One manifest lookup per change (the local store may be an S3 bucket), no delete."""
    local = BookkeepingCounter()
    store = CachedStore(local, VersionedRemote())
    store.put("small", b"v" * 100)
    store.put_stream("small", io.BytesIO(b"w" * 100))
    store.delete("small")
    assert +local.calls == Counter({"open_read": 3})


class CountingEvent(threading.Event):
    waiting = 0

    def wait(self, timeout: float | None = None) -> bool:
        CountingEvent.waiting += 1
        return super().wait(timeout)


def test_a_failed_fetch_reaches_every_waiting_reader_and_the_next_read_fetches_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_ranged.threading, "Event", CountingEvent)
    CountingEvent.waiting = 0
    remote = VersionedRemote()
    body = data_of(10 * BLOCK)
    remote.put("big", body)
    store = cached(remote)
    readers = [open_ranged(store, "big") for _ in range(4)]
    remote.gate, remote.failures = threading.Event(), 1
    errors: list[BaseException] = []

    def read(reader: IO[bytes]) -> None:
        reader.seek(6 * BLOCK)
        try:
            reader.read(10)
        except StoreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(reader,)) for reader in readers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + WAIT
    # The leader waits at the gate, the three others on its fetch.
    while CountingEvent.waiting < 4 and time.monotonic() < deadline:
        time.sleep(0.001)
    remote.gate.set()
    for thread in threads:
        thread.join(WAIT)
    assert len(errors) == 4 and all("broke off" in str(error) for error in errors)
    assert len({id(error) for error in errors}) == 4  # each reader its own, traceback and all
    assert remote.calls["open_range"] == 1 and blocks_held(store) == []
    readers[0].seek(6 * BLOCK)
    assert readers[0].read(10) == body[6 * BLOCK : 6 * BLOCK + 10]


def test_invalidate_drops_the_blocks() -> None:
    remote = VersionedRemote()
    remote.put("big", data_of(10 * BLOCK))
    store = cached(remote)
    reader = open_ranged(store, "big")
    reader.seek(BLOCK)
    reader.read(10)
    assert blocks_held(store)
    store.invalidate("big")
    assert blocks_held(store) == [] and list(store.local.keys(ROOT)) == []


def test_one_fetch_per_block_however_many_readers_want_it() -> None:
    remote = VersionedRemote()
    body = data_of(10 * BLOCK)
    remote.put("big", body)
    store = cached(remote)
    readers = [open_ranged(store, "big") for _ in range(8)]
    remote.gate = threading.Event()
    results: list[bytes] = []

    def read(reader: IO[bytes]) -> None:
        reader.seek(4 * BLOCK + 1)
        results.append(reader.read(100))

    threads = [threading.Thread(target=read, args=(reader,)) for reader in readers]
    for thread in threads:
        thread.start()
    remote.gate.set()
    for thread in threads:
        thread.join(WAIT)
    assert results == [body[4 * BLOCK + 1 : 4 * BLOCK + 101]] * 8
    assert remote.calls["open_range"] == 1


def test_the_policy_counts_blocks_by_their_bytes_and_may_evict_them() -> None:
    remote = VersionedRemote()
    body = data_of(10 * BLOCK + 1)
    remote.put("big", body)
    policy = Recording()
    store = cached(remote, policy)
    reader = open_ranged(store, "big")
    reader.seek(10 * BLOCK)
    assert reader.read() == body[-1:]
    reader.seek(2 * BLOCK)
    reader.read(BLOCK)
    assert sorted(policy.sizes.values()) == [1, BLOCK]  # bytes held, not the object's size
    (evicted,) = [key for key, size in policy.sizes.items() if size == BLOCK]
    policy.evict = [evicted]
    reader.seek(5 * BLOCK)
    reader.read(10)  # its insert evicts block 2
    assert evicted not in store.local
    ranges = len(remote.ranges)
    reader.seek(2 * BLOCK)
    assert reader.read(BLOCK) == body[2 * BLOCK : 3 * BLOCK]  # fetched again
    assert len(remote.ranges) == ranges + 1


class Damaging(MemoryStore):
    """A local store whose next read of the keys in `damaged` finds them corrupt."""

    def __init__(self) -> None:
        super().__init__()
        self.damaged: set[str] = set()

    def open_read(self, key: str) -> EntryReader:
        if key in self.damaged:
            self.damaged.discard(key)
            raise CorruptEntryError(f"{key!r} does not match its checksum")
        return super().open_read(key)


def test_a_damaged_block_is_dropped_and_fetched_again() -> None:
    remote = VersionedRemote()
    body = data_of(10 * BLOCK)
    remote.put("big", body)
    local = Damaging()
    store = CachedStore(local, remote)
    store.partials.block_size, store.partials.whole_limit = BLOCK, 4 * BLOCK
    reader = open_ranged(store, "big")
    reader.seek(5 * BLOCK)
    assert reader.read(10) == body[5 * BLOCK : 5 * BLOCK + 10]
    (block,) = blocks_held(store)
    local.damaged.add(block)
    reader.seek(5 * BLOCK + 100)
    assert reader.read(10) == body[5 * BLOCK + 100 : 5 * BLOCK + 110]
    assert remote.ranges == [(5 * BLOCK, 6 * BLOCK)] * 2


def test_a_damaged_manifest_starts_again() -> None:
    remote = VersionedRemote()
    body = data_of(10 * BLOCK)
    remote.put("big", body)
    store = cached(remote)
    reader = open_ranged(store, "big")
    reader.seek(BLOCK)
    reader.read(10)
    del reader
    (manifest,) = [key for key in store.local.keys(ROOT) if key.count("/") == 1]
    store.local.put(manifest, b"{not json")
    again = open_ranged(store, "big")
    again.seek(BLOCK)
    assert again.read(10) == body[BLOCK : BLOCK + 10]


def test_the_default_open_range_slices_and_checks_the_etag() -> None:
    remote = VersionedRemote()
    remote.put("k", b"0123456789")
    etag = remote.stat("k").etag
    assert etag is not None
    with remote.open_range("k", 2, 5, if_match=etag) as entry:
        assert entry.read() == b"234" and entry.stat.size == 10
    with remote.open_range("k", 8, 50) as entry:
        assert entry.read() == b"89"
    with pytest.raises(EntryChangedError):
        remote.open_range("k", 0, 1, if_match="another")
    with pytest.raises(ValueError, match="start <= end"):
        remote.open_range("k", 5, 2)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(min_value=4 * BLOCK + 1, max_value=9 * BLOCK),
    reads=st.lists(
        st.tuples(st.integers(0, 10 * BLOCK), st.integers(0, 3 * BLOCK)), min_size=1, max_size=12
    ),
    evictions=st.lists(st.integers(0, 8), max_size=4),
)
def test_any_reads_return_the_objects_bytes(
    size: int, reads: list[tuple[int, int]], evictions: list[int]
) -> None:
    remote = VersionedRemote()
    body = data_of(size, seed=size)
    remote.put("big", body)
    policy = Recording()
    store = cached(remote, policy)
    reader = open_ranged(store, "big")
    for step, (offset, count) in enumerate(reads):
        if step < len(evictions):
            policy.evict = [key for key in policy.sizes if key.endswith(f"/{evictions[step]}")]
        reader.seek(offset)
        assert reader.read(count) == body[offset : offset + count]
    fetched = sum(end - start for start, end in remote.ranges)
    assert remote.calls["open_read"] <= 1
    if remote.calls["open_read"] == 0:  # ranged all the way: never more than was needed twice
        assert fetched <= 2 * size + len(evictions) * BLOCK


class Freshness(CachePolicy):
    def __init__(self) -> None:
        self.fresh = True

    def is_fresh(self, key: str, stat: EntryStat) -> bool:
        return self.fresh


def test_a_stale_partial_entry_is_dropped_and_read_again() -> None:
    remote = VersionedRemote()
    body = data_of(10 * BLOCK)
    remote.put("big", body)
    policy = Freshness()
    store = cached(remote, policy)
    reader = open_ranged(store, "big")
    reader.seek(5 * BLOCK)
    reader.read(10)
    del reader
    assert len(blocks_held(store)) == 1
    policy.fresh = False  # as a TTL does once the manifest is older than its interval
    stats = remote.calls["stat"]
    reader = open_ranged(store, "big")
    assert remote.calls["stat"] == stats + 1  # asked the remote again
    reader.seek(5 * BLOCK)
    assert reader.read(10) == body[5 * BLOCK : 5 * BLOCK + 10]
    assert remote.ranges == [(5 * BLOCK, 6 * BLOCK)] * 2


def test_a_write_while_a_block_is_fetched_keeps_nothing_of_the_old_version() -> None:
    remote = VersionedRemote()
    old, new = data_of(10 * BLOCK, seed=5), data_of(10 * BLOCK, seed=6)
    remote.put("big", old)
    store = cached(remote)
    reader = open_ranged(store, "big")
    remote.gate = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        reader.seek(3 * BLOCK)
        try:
            reader.read(10)
        except EntryChangedError as exc:
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    deadline = time.monotonic() + WAIT
    while remote.calls["open_range"] == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    store.put_stream("big", io.BytesIO(new))  # while the block's fetch is held
    remote.gate.set()
    thread.join(WAIT)
    assert len(errors) == 1  # the fetch found the new version: refused, not spliced
    assert blocks_held(store) == []
    fresh = store.open_read("big")
    assert fresh.read() == new


def test_blocks_of_an_older_version_are_never_joined_over_a_write_made_elsewhere() -> None:
    """Every block of v1 is fetched; another process writes v2 before they are joined into
    one local entry: the join is refused (its fence moved, its blocks went), so a later
    reader gets v2, never v1."""
    remote = VersionedRemote()
    old, new = bytes(range(256)) * 24, b"v2" * 3000  # 6 KiB: six blocks
    remote.put("big", old)
    kept = threading.Event()

    class Shared(MemoryStore):
        """One local store for both processes; the last block's store waits for the write."""

        def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
            stat = super().put_stream(key, stream, etag=etag)
            if key.startswith(ROOT) and key.endswith("/0"):  # the last block this reader reads
                kept.set()
                assert writer_done.wait(WAIT)
            return stat

    shared = Shared()
    reader_process = CachedStore(shared, remote)
    reader_process.partials.block_size, reader_process.partials.whole_limit = BLOCK, 4 * BLOCK
    writer_process = CachedStore(shared, remote)
    writer_done = threading.Event()
    results: list[bytes | Exception] = []

    def read() -> None:
        entry = reader_process.partials.open("big")
        assert entry is not None
        with entry:  # block by block, not from the start (that would be read whole)
            entry.stream.seek(BLOCK)
            rest = entry.stream.read(5 * BLOCK)
            entry.stream.seek(0)
            try:
                results.append(entry.stream.read(BLOCK) + rest)
            except (EntryChangedError, StoreError) as exc:  # its blocks went with the write
                results.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    assert kept.wait(WAIT)
    writer_process.put("big", new)
    writer_done.set()
    reader.join(WAIT)
    assert len(results) == 1 and (results[0] == old or isinstance(results[0], Exception))
    assert shared.get("big") == new  # the write's copy, never a join of the older version
    assert CachedStore(shared, remote).get("big") == new


def test_readers_opening_one_large_object_at_once_ask_its_stat_once() -> None:
    remote = VersionedRemote()
    remote.put("big", data_of(6 * BLOCK))
    store = cached(remote)
    gate, asked = threading.Event(), threading.Event()
    stat = remote.stat

    def held_stat(key: str) -> EntryStat:
        asked.set()
        assert gate.wait(WAIT)
        return stat(key)

    remote.stat = held_stat  # type: ignore[method-assign]
    remote.calls.clear()
    opened: list[EntryReader | None] = []
    readers = [threading.Thread(target=lambda: opened.append(store.partials.open("big")))]
    readers[0].start()
    assert asked.wait(WAIT)
    readers += [
        threading.Thread(target=lambda: opened.append(store.partials.open("big"))) for _ in range(7)
    ]
    for reader in readers[1:]:
        reader.start()
    time.sleep(0.2)  # the seven reach the stat in flight (a late one finds the partial: no stat)
    gate.set()
    for reader in readers:
        reader.join(WAIT)
    assert len(opened) == 8 and all(entry is not None for entry in opened)
    assert remote.calls["stat"] == 1


class KeepsBlocksOnly(CachePolicy):
    """Admits a block, never the whole object: a whole-object fetch keeps no copy."""

    def admits(self, size: int | None) -> bool:
        return size is not None and size <= BLOCK


class HeldGet:
    """Holds the remote's GETs until `expected` ranged openers have arrived: each waits on a
    flight of the engine's coordinator, or calls `arrive` once it opened without waiting."""

    def __init__(self, remote: VersionedRemote, expected: int, mp: pytest.MonkeyPatch) -> None:
        self.expected = expected
        self.arrived = 0
        self.arrivals = threading.Condition()
        self.getting = threading.Event()  # a GET started
        self.failure: Exception | None = None  # what the GET raises once released
        arrive = self.arrive

        class Awaited(threading.Event):
            def wait(self, timeout: float | None = None) -> bool:
                arrive()
                return super().wait(timeout)

        mp.setattr(_coordinator, "threading", SimpleNamespace(Event=Awaited, Lock=threading.Lock))
        get = remote.open_read

        def held_get(key: str) -> EntryReader:
            entry = None if self.failure is not None else get(key)  # what the remote has now
            self.getting.set()
            with self.arrivals:
                assert self.arrivals.wait_for(lambda: self.arrived >= expected, WAIT)
            if entry is None:
                raise cast(Exception, self.failure)
            return entry

        mp.setattr(remote, "open_read", held_get)

    def arrive(self) -> None:
        with self.arrivals:
            self.arrived += 1
            self.arrivals.notify_all()

    def run(self, whole: Callable[[], None], opener: Callable[[], None]) -> None:
        """`whole` in a thread until its GET starts, then `expected` threads of `opener`."""
        threads = [threading.Thread(target=whole)]
        threads[0].start()
        assert self.getting.wait(WAIT)
        threads += [threading.Thread(target=opener) for _ in range(self.expected)]
        for thread in threads[1:]:
            thread.start()
        for thread in threads:
            thread.join(WAIT)


@pytest.mark.parametrize(
    ("policy", "remote_calls"),
    [
        (None, {"open_read": 1}),  # the fetch kept a copy: the ranged readers read that
        (KeepsBlocksOnly(), {"open_read": 1, "open_range": 1}),  # its stat spares theirs
    ],
    ids=["kept", "not-kept"],
)
def test_ranged_readers_opening_a_key_while_it_is_fetched_whole_wait_for_that_fetch(
    policy: CachePolicy | None, remote_calls: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole-object fetch's GET is held until every ranged opener waits on it (or, had
    they asked the remote themselves, has opened): no opener asks the remote for a stat."""
    remote = VersionedRemote()
    body = data_of(10 * BLOCK)
    remote.put("big", body)
    store = cached(remote, policy)
    held = HeldGet(remote, 4, monkeypatch)
    remote.calls.clear()
    wholes: list[bytes] = []
    opened: list[EntryReader | None] = []

    def open_ranged() -> None:
        opened.append(store.partials.open("big"))
        held.arrive()

    held.run(lambda: wholes.append(store.get("big")), open_ranged)
    assert wholes == [body] and len(opened) == 4
    for entry in opened:  # all held open, so they share one partial entry
        with entry or store.open_read("big") as reader:
            reader.stream.seek(5 * BLOCK)
            assert reader.stream.read(100) == body[5 * BLOCK : 5 * BLOCK + 100]
    assert +remote.calls == Counter(remote_calls)


def test_ranged_readers_joining_a_fetch_a_write_overtook_ask_the_remote_themselves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write that began during the whole-object fetch makes its answer suspect: the ranged
    readers waiting on it then ask the remote, and read the written version."""
    remote = VersionedRemote()
    remote.put("big", data_of(10 * BLOCK))
    store = cached(remote, KeepsBlocksOnly())
    held = HeldGet(remote, 2, monkeypatch)
    newer = data_of(10 * BLOCK, seed=1)
    read: list[bytes] = []

    def read_ranged() -> None:
        entry = store.partials.open("big")
        held.arrive()
        with entry or store.open_read("big") as reader:
            reader.stream.seek(5 * BLOCK)
            read.append(reader.stream.read(100))

    whole = threading.Thread(target=store.get, args=("big",))
    whole.start()
    assert held.getting.wait(WAIT)  # the fetch has the old version in hand
    store.put("big", newer)
    readers = [threading.Thread(target=read_ranged) for _ in range(2)]
    for thread in readers:
        thread.start()
    for thread in [whole, *readers]:
        thread.join(WAIT)
    assert read == [newer[5 * BLOCK : 5 * BLOCK + 100]] * 2


def test_ranged_readers_waiting_on_a_failed_whole_fetch_each_get_their_own_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remote = VersionedRemote()
    remote.put("big", data_of(10 * BLOCK))
    store = cached(remote)
    held = HeldGet(remote, 4, monkeypatch)
    held.failure = RemoteError("the remote broke off")
    remote.calls.clear()
    errors: list[BaseException] = []

    def fail(read: Callable[[], object]) -> None:
        try:
            read()
        except RemoteError as exc:
            errors.append(exc)
        else:
            held.arrive()

    held.run(
        lambda: fail(lambda: store.get("big")), lambda: fail(lambda: store.partials.open("big"))
    )
    assert len(errors) == 5 and all("broke off" in str(error) for error in errors)
    assert len({id(error) for error in errors}) == 5  # no traceback piles up on a shared one
    assert remote.calls["stat"] == 0
