"""The cached-store engine over memory stores and small test doubles: counts, not timings."""

from __future__ import annotations

import gc
import io
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cached_stores_factory import (
    CachedStore,
    CachedStoreFactory,
    CachePolicy,
    EntryReader,
    EntryStat,
    JsonSerializer,
    MemoryStore,
    Store,
)
from cached_stores_factory._spool import SPOOL_LIMIT
from cached_stores_factory.errors import (
    KeyNotFoundError,
    RemoteError,
    SerializerError,
    StoreError,
)
from cached_stores_factory.testing.stores import DictStore

WAIT = 10.0  # seconds a test waits for other threads before it gives up (never a timing check)


class CountingStore(MemoryStore):
    """A memory store that counts calls, can fail on demand, and can hold fetches on an Event."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.fail_reads: Exception | None = None
        self.fail_writes: Exception | None = None
        self.gate: threading.Event | None = None  # open_read waits on it when set
        self.entered = threading.Semaphore(0)  # released when a fetch reaches the gate
        self.put_gate: threading.Event | None = None  # put_stream waits on it when set
        self.put_entered = threading.Semaphore(0)

    def open_read(self, key: str) -> EntryReader:
        self.calls["open_read"] += 1
        entry = super().open_read(key)  # the version of the key when the fetch began
        gate = self.gate
        if gate is not None:
            self.entered.release()
            assert gate.wait(WAIT), "the test never opened the gate"
        if self.fail_reads is not None:
            raise self.fail_reads
        return entry

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        self._writing(stream)
        return super().put_stream(key, stream, etag=etag)

    def put_fenced(
        self, key: str, stream: IO[bytes], *, etag: str | None, fence: str
    ) -> EntryStat | None:
        self._writing(stream)
        return super().put_fenced(key, stream, etag=etag, fence=fence)

    def _writing(self, stream: IO[bytes]) -> None:
        """Every write is counted as `put_stream`, and may be held or failed."""
        self.calls["put_stream"] += 1
        gate = self.put_gate
        if gate is not None:
            self.put_entered.release()
            assert gate.wait(WAIT), "the test never opened the gate"
        if self.fail_writes is not None:
            stream.read(3)  # a failure midway, after reading some of the stream
            raise self.fail_writes

    def get(self, key: str) -> bytes:
        self.calls["get"] += 1
        return super().get(key)

    def stat(self, key: str) -> EntryStat:
        self.calls["stat"] += 1
        return super().stat(key)

    def delete(self, key: str) -> bool:
        self.calls["delete"] += 1
        return super().delete(key)

    def remote_calls(self) -> int:
        return sum(self.calls.values())


class RefusingPolicy(CachePolicy):
    """Admits nothing: every object is served without being kept."""

    def admits(self, size: int | None) -> bool:
        return False


class DepthPolicy(CachePolicy):
    """A FIFO of `depth` keys, enough to watch the engine evict."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.order: list[str] = []
        self.deleted: list[str] = []

    def on_insert(self, key: str, stat: EntryStat) -> Sequence[str]:
        if key in self.order:
            self.order.remove(key)
        self.order.append(key)
        return self.order[: -self.depth] if len(self.order) > self.depth else []

    def on_delete(self, key: str) -> None:
        self.deleted.append(key)
        if key in self.order:
            self.order.remove(key)


class SelfEvictingPolicy(CachePolicy):
    """Evicts every key the moment it is inserted, as a byte budget smaller than it would."""

    def on_insert(self, key: str, stat: EntryStat) -> Sequence[str]:
        return [key]


class StalePolicy(CachePolicy):
    """Nothing local is ever fresh: a TTL of zero."""

    def is_fresh(self, key: str, stat: EntryStat) -> bool:
        return False


@pytest.fixture
def remote() -> CountingStore:
    store = CountingStore()
    store.put("a/b.txt", b"hello\nworld\n")
    return store


@pytest.fixture
def local() -> CountingStore:
    return CountingStore()


@pytest.fixture
def cs(local: CountingStore, remote: CountingStore) -> CachedStore:
    return CachedStoreFactory(local, remote).build()


def run_threads(count: int, target: Callable[[], Any]) -> list[Any]:
    """Run `target` in `count` threads at once; return each one's result or exception."""
    barrier = threading.Barrier(count)

    def call() -> Any:
        barrier.wait(WAIT)
        try:
            return target()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: call(), range(count)))


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.001)


# -- read-through -------------------------------------------------------------------------


def test_a_miss_fetches_once_then_hits_never_call_the_remote(cs, remote, local) -> None:
    with cs.open("a/b.txt", "rb") as fh:
        assert fh.read() == b"hello\nworld\n"
    assert remote.calls["open_read"] == 1
    assert local.get("a/b.txt") == b"hello\nworld\n"
    remote.calls.clear()
    for _ in range(5):
        with cs.open("a/b.txt", "rb") as fh:
            assert fh.read() == b"hello\nworld\n"
    assert remote.remote_calls() == 0
    assert cs.stats() == {
        "hits": 5,
        "misses": 1,
        "coalesced": 0,
        "remote_reads": 1,
        "remote_writes": 0,
        "evictions": 0,
        "revalidated": 0,
        "stale_served": 0,
        "bytes_from_remote": 12,
        "bytes_from_local": 60,
    }


def test_read_only_binary_open_returns_the_local_stream_itself(remote) -> None:
    sentinel = io.BytesIO(b"local bytes")

    class OneStreamStore(MemoryStore):
        def open_read(self, key: str) -> EntryReader:
            return EntryReader(sentinel, EntryStat(size=11, modified=0.0))

    cs = CachedStoreFactory(OneStreamStore(), remote).build()
    assert cs.open("a/b.txt", "rb") is sentinel
    assert remote.remote_calls() == 0


def test_a_hit_validates_its_key_once(remote, monkeypatch) -> None:
    """The engine checks the key by the stricter user-key rules; the store's check is skipped."""
    from cached_stores_factory import _engine, _store

    cs = CachedStoreFactory(MemoryStore(), remote).build()
    cs.get("a/b.txt")
    calls: list[str] = []

    def counting(real: Any) -> Any:
        def check(key: str) -> str:
            calls.append(key)
            return real(key)  # type: ignore[no-any-return]

        return check

    monkeypatch.setattr(_store, "validate_key", counting(_store.validate_key))
    monkeypatch.setattr(_engine, "checked_user_key", counting(_engine.checked_user_key))
    assert cs.open("a/b.txt", "rb").read() == b"hello\nworld\n"
    assert calls == ["a/b.txt"]


def test_a_text_handle_commits_once_when_closed(cs, remote) -> None:
    handle = cs.open("t.txt", "w")
    for line in ("one\n", "two\n", "three\n"):
        handle.write(line)
    assert cs.stats()["remote_writes"] == 0
    handle.close()
    assert cs.stats()["remote_writes"] == 1
    assert remote.get("t.txt") == b"one\ntwo\nthree\n"


def test_a_stale_entry_is_fetched_again(local, remote) -> None:
    cs = CachedStoreFactory(local, remote, StalePolicy()).build()
    for _ in range(3):
        assert cs.get("a/b.txt") == b"hello\nworld\n"
    assert remote.calls["open_read"] == 3
    assert cs.stats()["hits"] == 0


def test_a_missing_key_raises_file_not_found_naming_it(cs) -> None:
    for mode in ("r", "rb", "r+", "r+b"):
        with pytest.raises(FileNotFoundError, match=r"no/such\.key") as info:
            cs.open("no/such.key", mode)
        assert info.value.filename == "no/such.key"
    with pytest.raises(KeyError):
        cs.get("no/such.key")
    assert cs.get("no/such.key", None) is None


def test_x_mode_refuses_an_existing_key(cs) -> None:
    with pytest.raises(FileExistsError, match=r"a/b\.txt"):
        cs.open("a/b.txt", "xb")
    with cs.open("new.key", "x") as fh:
        fh.write("created")
    assert cs.get("new.key") == b"created"


def test_invalid_keys_never_reach_a_store(cs, remote, local) -> None:
    remote.calls.clear()
    for key in ("../escape", "/abs", "a//b", ""):
        for mode in ("rb", "wb"):
            with pytest.raises(ValueError):
                cs.open(key, mode)
    assert remote.remote_calls() == 0
    assert local.remote_calls() == 0


def test_text_mode_reads_and_iterates(cs) -> None:
    with cs.open("a/b.txt", "r") as fh:
        assert list(fh) == ["hello\n", "world\n"]
    with cs.open("a/b.txt", "r", newline="") as fh:
        assert fh.readline() == "hello\n"
    with pytest.raises(ValueError, match="binary mode"):
        cs.open("a/b.txt", "rb", encoding="utf-8")


# -- single-flight ------------------------------------------------------------------------


def test_32_threads_on_one_cold_key_cause_exactly_one_fetch(cs, remote) -> None:
    remote.put("cold", b"x" * 100_000)
    remote.calls.clear()
    remote.gate = threading.Event()

    def opener() -> None:
        wait_until(lambda: cs.stats()["misses"] == 32)
        remote.gate.set()

    threading.Thread(target=opener, daemon=True).start()
    results = run_threads(32, lambda: cs.get("cold"))
    assert results == [b"x" * 100_000] * 32
    assert remote.calls["open_read"] == 1
    stats = cs.stats()
    assert stats["remote_reads"] == 1
    assert stats["misses"] + stats["hits"] == 32


def test_a_failed_fetch_reaches_every_waiter_and_the_next_read_retries(cs, remote) -> None:
    remote.calls.clear()
    remote.gate = threading.Event()
    remote.fail_reads = StoreError("the remote is down")

    def opener() -> None:
        wait_until(lambda: cs.stats()["coalesced"] == 15)
        remote.gate.set()

    threading.Thread(target=opener, daemon=True).start()
    results = run_threads(16, lambda: cs.get("a/b.txt"))
    assert all(isinstance(r, StoreError) and "the remote is down" in str(r) for r in results)
    assert remote.calls["open_read"] == 1
    remote.fail_reads = None
    assert cs.get("a/b.txt") == b"hello\nworld\n"
    assert remote.calls["open_read"] == 2


def test_readers_of_other_keys_do_not_wait_for_a_fetch(local, remote) -> None:
    remote.put("other", b"other bytes")
    cs = CachedStoreFactory(local, remote).build()
    cs.get("other")  # cached
    remote.gate = threading.Event()
    blocked = threading.Thread(target=cs.get, args=("a/b.txt",), daemon=True)
    blocked.start()
    assert remote.entered.acquire(timeout=WAIT)  # the fetch of a/b.txt holds the remote
    assert cs.get("other") == b"other bytes"  # a hit, served while that fetch waits
    remote.gate.set()
    blocked.join(WAIT)
    assert not blocked.is_alive()


def test_a_not_admitted_object_reaches_every_waiter_from_one_fetch(local, remote) -> None:
    big = bytes(range(256)) * (SPOOL_LIMIT // 256 + 1000)  # past the spool limit: on disk
    remote.put("big", big)
    remote.calls.clear()
    cs = CachedStoreFactory(local, remote, RefusingPolicy()).build()
    remote.gate = threading.Event()

    def opener() -> None:
        wait_until(lambda: cs.stats()["coalesced"] == 7)
        remote.gate.set()

    def read_in_pieces() -> bytes:
        with cs.open("big", "rb") as fh:
            head = fh.read(1000)
            fh.seek(-10, io.SEEK_END)
            tail = fh.read()
            fh.seek(1000)
            return head + fh.read()[:-10] + tail

    threading.Thread(target=opener, daemon=True).start()
    results = run_threads(8, read_in_pieces)
    assert all(r == big for r in results)
    assert remote.calls["open_read"] == 1
    assert "big" not in local


def test_a_key_the_policy_evicts_at_once_is_still_served(local, remote) -> None:
    cs = CachedStoreFactory(local, remote, SelfEvictingPolicy()).build()
    assert cs.get("a/b.txt") == b"hello\nworld\n"
    assert "a/b.txt" not in local
    assert cs.stats()["evictions"] == 1


def test_a_local_store_that_cannot_hold_an_object_still_serves_it(cs, local) -> None:
    local.fail_writes = StoreError("value too large for this store")
    assert cs.get("a/b.txt") == b"hello\nworld\n"
    assert "a/b.txt" not in local
    assert cs.stats()["remote_reads"] == 2  # the failed copy consumed the first stream


def test_a_local_store_that_is_down_does_not_take_reads_with_it(remote) -> None:
    class DownStore(MemoryStore):
        def open_read(self, key: str) -> EntryReader:
            raise StoreError("connection refused")

        def stat(self, key: str) -> EntryStat:
            raise StoreError("connection refused")

    cs = CachedStoreFactory(DownStore(), remote).build()
    remote.calls.clear()
    assert run_threads(8, lambda: cs.get("a/b.txt")) == [b"hello\nworld\n"] * 8
    assert cs.open("a/b.txt", "rb").read() == b"hello\nworld\n"
    assert remote.calls["open_read"] == cs.stats()["remote_reads"] <= 9


def test_a_write_during_a_fetch_leaves_no_stale_local_copy(local, remote) -> None:
    cs = CachedStoreFactory(local, remote).build()
    remote.gate = threading.Event()
    results: list[bytes] = []
    reader = threading.Thread(target=lambda: results.append(cs.get("a/b.txt")), daemon=True)
    reader.start()
    assert remote.entered.acquire(timeout=WAIT)  # the fetch holds the old version
    gate, remote.gate = remote.gate, None
    cs.put("a/b.txt", b"new version")  # a write never waits for a fetch
    gate.set()
    reader.join(WAIT)
    assert results == [b"hello\nworld\n"]  # the read began first: the old version is fine
    assert local.get("a/b.txt") == b"new version"  # but it did not overwrite the new one
    remote.calls.clear()
    assert cs.get("a/b.txt") == b"new version"
    assert remote.remote_calls() == 0


def test_a_delete_during_a_fetch_leaves_no_local_copy(local, remote) -> None:
    cs = CachedStoreFactory(local, remote).build()
    remote.gate = threading.Event()
    results: list[bytes] = []
    reader = threading.Thread(target=lambda: results.append(cs.get("a/b.txt")), daemon=True)
    reader.start()
    assert remote.entered.acquire(timeout=WAIT)
    gate, remote.gate = remote.gate, None
    assert cs.delete("a/b.txt") is True
    gate.set()
    reader.join(WAIT)
    assert results == [b"hello\nworld\n"]
    assert "a/b.txt" not in local and "a/b.txt" not in cs


def test_overlapping_writes_of_one_key_leave_no_local_copy(local, remote) -> None:
    cs = CachedStoreFactory(local, remote).build()
    remote.put_gate = threading.Event()
    first = threading.Thread(target=cs.put, args=("w/k", b"first"), daemon=True)
    first.start()
    assert remote.put_entered.acquire(timeout=WAIT)  # the first write is at the remote
    gate, remote.put_gate = remote.put_gate, None
    cs.put("w/k", b"second")  # overtakes it
    gate.set()
    first.join(WAIT)
    assert remote.get("w/k") == b"first"  # the remote kept the last write it received
    assert "w/k" not in local  # so no local copy can disagree with it
    assert cs.get("w/k") == b"first"


def test_concurrent_reads_of_many_keys_all_succeed(local, remote) -> None:
    for i in range(20):
        remote.put(f"k/{i}", str(i).encode())
    cs = CachedStoreFactory(local, remote, DepthPolicy(5)).build()
    results = run_threads(16, lambda: [cs.get(f"k/{i}") for i in range(20)])
    assert all(r == [str(i).encode() for i in range(20)] for r in results)
    assert len(list(local.keys())) <= 5 + 16  # a bound, whatever the interleaving


def test_stats_count_every_hit_from_many_threads(cs) -> None:
    cs.get("a/b.txt")
    results = run_threads(8, lambda: [cs.get("a/b.txt") for _ in range(500)])
    assert all(len(r) == 500 for r in results)
    assert cs.stats()["hits"] == 8 * 500
    gc.collect()  # the pool's threads are gone: their counts must survive them
    assert cs.stats()["hits"] == 8 * 500


def test_a_dropped_store_is_freed_with_its_counters(remote) -> None:
    import weakref

    cs = CachedStoreFactory(MemoryStore(), remote).build()
    cs.get("a/b.txt")
    cs.get("a/b.txt")
    refs = [weakref.ref(cs), weakref.ref(cs._counters)]
    del cs
    gc.collect()
    assert [ref() for ref in refs] == [None, None]


# -- write-through ------------------------------------------------------------------------


@pytest.mark.parametrize("commit", ["close", "with", "gc"])
def test_a_write_commits_remote_then_local(cs, remote, local, commit: str) -> None:
    fh = cs.open("w/new.bin", "wb")
    fh.write(b"payload")
    fh.flush()
    assert "w/new.bin" not in remote  # flush uploads nothing
    if commit == "close":
        fh.close()
    elif commit == "with":
        with fh:
            pass
    else:
        del fh
        gc.collect()
    assert remote.get("w/new.bin") == b"payload"
    assert local.get("w/new.bin") == b"payload"
    assert cs.stats()["remote_writes"] == 1


def test_a_failed_remote_write_raises_and_every_read_still_sees_the_old_value(
    cs, remote, local
) -> None:
    cs.get("a/b.txt")  # a local copy of the old version
    fh = cs.open("a/b.txt", "wb")
    fh.write(b"new")
    remote.fail_writes = StoreError("remote refused the write")
    with pytest.raises(StoreError, match="refused"):
        fh.close()
    assert not fh.closed
    assert remote.get("a/b.txt") == b"hello\nworld\n"
    # The copy was dropped before the attempt, so no failure could leave it older than the
    # remote; the next read fetches the unchanged version again.
    assert "a/b.txt" not in local
    assert cs.get("a/b.txt") == b"hello\nworld\n"
    remote.fail_writes = None
    fh.close()
    assert remote.get("a/b.txt") == b"new"
    assert local.get("a/b.txt") == b"new"


def test_a_failed_local_write_after_the_remote_drops_the_local_copy(cs, remote, local) -> None:
    cs.get("a/b.txt")
    local.fail_writes = StoreError("disk full")
    cs.put("a/b.txt", b"new")
    assert remote.get("a/b.txt") == b"new"
    assert "a/b.txt" not in local
    local.fail_writes = None
    assert cs.get("a/b.txt") == b"new"


def test_a_write_the_policy_refuses_drops_the_old_local_copy(local, remote) -> None:
    CachedStoreFactory(local, remote).build().get("a/b.txt")
    cs = CachedStoreFactory(local, remote, RefusingPolicy()).build()
    cs.put("a/b.txt", b"new")
    assert "a/b.txt" not in local
    assert cs.get("a/b.txt") == b"new"


def test_unchanged_handles_commit_nothing(cs, remote) -> None:
    with cs.open("a/b.txt") as fh:  # the default r+b
        assert fh.read(5) == b"hello"
    with cs.open("a/b.txt", "ab"):
        pass
    assert cs.stats()["remote_writes"] == 0
    with cs.open("empty", "wb"):
        pass  # "w" truncates at once, as open() does: an empty entry exists
    assert remote.get("empty") == b""


def test_the_seed_sequence_reads_then_appends(cs, remote) -> None:
    handle = cs.open("a/b.txt")
    assert handle.read() == b"hello\nworld\n"
    handle.write(b"more\n")
    del handle
    gc.collect()
    assert remote.get("a/b.txt") == b"hello\nworld\nmore\n"


def test_closing_the_store_commits_its_open_handles(cs, remote) -> None:
    fh = cs.open("pending", "wb")
    fh.write(b"x")
    cs.close()
    assert fh.closed
    assert remote.get("pending") == b"x"


def test_a_forward_only_stream_is_spooled_for_both_tiers(cs, remote, local) -> None:
    class ForwardOnly(io.RawIOBase):
        def __init__(self) -> None:
            self.data = io.BytesIO(b"streamed")

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            return self.data.readinto(buffer)

    cs.put_stream("s", ForwardOnly())  # type: ignore[arg-type]
    assert remote.get("s") == local.get("s") == b"streamed"


# -- the value API ------------------------------------------------------------------------


def test_value_api(local, remote) -> None:
    cs = CachedStoreFactory(local, remote, serializer=JsonSerializer()).build()
    cs["cfg/a.json"] = {"x": [1, 2]}
    assert cs["cfg/a.json"] == {"x": [1, 2]}
    assert remote.get("cfg/a.json") == b'{"x":[1,2]}'
    assert "cfg/a.json" in cs
    assert cs.get("cfg/missing.json", "default") == "default"
    cs.put("cfg/b.json", 3)
    assert sorted(cs.keys("cfg/")) == ["cfg/a.json", "cfg/b.json"]
    assert list(cs.keys("nope/")) == []

    assert cs.invalidate("cfg/a.json") is True
    assert "cfg/a.json" not in local and "cfg/a.json" in remote
    assert cs["cfg/a.json"] == {"x": [1, 2]}

    assert cs.clear() == 2
    assert list(local.keys()) == []
    assert sorted(remote.keys("cfg/")) == ["cfg/a.json", "cfg/b.json"]

    del cs["cfg/a.json"]
    assert "cfg/a.json" not in remote and "cfg/a.json" not in local
    assert "cfg/a.json" not in cs
    with pytest.raises(KeyError):
        del cs["cfg/a.json"]
    assert cs.delete("cfg/b.json") is True
    assert cs.delete("cfg/b.json") is False


def test_the_default_serializer_stores_bytes_only(cs) -> None:
    cs["b"] = bytearray(b"ok")
    assert cs["b"] == b"ok"
    with pytest.raises(SerializerError, match="json"):
        cs["x"] = {"not": "bytes"}


def test_stat_prefers_a_fresh_local_copy(cs, remote) -> None:
    assert cs.stat("a/b.txt").size == 12  # from the remote: nothing fetched
    assert cs.stats()["remote_reads"] == 0
    cs.get("a/b.txt")
    remote.calls.clear()
    assert cs.stat("a/b.txt").size == 12
    assert remote.remote_calls() == 0
    with pytest.raises(KeyNotFoundError):
        cs.stat("missing")


# -- policy hooks -------------------------------------------------------------------------


def test_evictions_remove_local_copies_only(local, remote) -> None:
    for i in range(4):
        remote.put(f"e/{i}", b"v")
    policy = DepthPolicy(2)
    cs = CachedStoreFactory(local, remote, policy).build()
    for i in range(4):
        cs.get(f"e/{i}")
    assert sorted(local.keys()) == ["e/2", "e/3"]
    assert sorted(remote.keys("e/")) == ["e/0", "e/1", "e/2", "e/3"]
    assert cs.stats()["evictions"] == 2
    assert policy.deleted == ["e/0", "e/1"]


def test_purge_drops_what_the_policy_says_expired(local, remote) -> None:
    class ExpiresAll(CachePolicy):
        def expired(self) -> Iterator[str]:
            return iter(["a/b.txt"])

    cs = CachedStoreFactory(local, remote, ExpiresAll()).build()
    cs.get("a/b.txt")
    assert cs.purge() == 1
    assert "a/b.txt" not in local and "a/b.txt" in remote


# -- nesting ------------------------------------------------------------------------------


def test_tiers_nest(remote) -> None:
    middle = CountingStore()
    inner = CachedStoreFactory(middle, remote).build()
    top = CountingStore()
    outer = CachedStoreFactory(top, inner, DepthPolicy(100)).build()
    assert isinstance(inner, Store)
    assert outer.get("a/b.txt") == b"hello\nworld\n"
    assert top.get("a/b.txt") == middle.get("a/b.txt") == b"hello\nworld\n"
    remote.calls.clear()
    middle.calls.clear()
    assert outer.get("a/b.txt") == b"hello\nworld\n"
    assert remote.remote_calls() == 0 and middle.remote_calls() == 0
    outer.put("n/new", b"through all tiers")
    assert remote.get("n/new") == middle.get("n/new") == top.get("n/new")
    outer.delete("n/new")
    assert "n/new" not in remote and "n/new" not in middle and "n/new" not in top


# -- coherence ----------------------------------------------------------------------------

engine_ops = st.lists(
    st.tuples(
        st.sampled_from(["get", "put", "write", "append", "delete", "invalidate", "clear"]),
        st.sampled_from(["k/a", "k/b", "k/c", "k/d"]),
        st.binary(max_size=8),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    ops=engine_ops,
    depth=st.integers(min_value=1, max_value=5),
    stale=st.booleans(),
    nested=st.booleans(),
)
def test_reads_always_see_the_last_write(ops: list, depth: int, stale: bool, nested: bool) -> None:
    """Any sequence of reads, writes, appends and deletes reads back like a dict, and every
    local copy equals the remote's object: the cache never serves or keeps a stale version.
    With `nested`, the remote is itself a cached store (memory over memory over memory)."""
    local, remote, middle = MemoryStore(), MemoryStore(), MemoryStore()
    policy: CachePolicy = StalePolicy() if stale else DepthPolicy(depth)
    below: Store = CachedStoreFactory(middle, remote).build() if nested else remote
    cs = CachedStoreFactory(local, below, policy).build()
    model: dict[str, bytes] = {}
    for op, key, data in ops:
        if op == "get":
            assert cs.get(key, None) == model.get(key)
        elif op == "put":
            cs[key] = data
            model[key] = data
        elif op == "write":
            with cs.open(key, "wb") as fh:
                fh.write(data)
            model[key] = data
        elif op == "append":
            with cs.open(key, "ab") as fh:
                fh.write(data)
            model[key] = model.get(key, b"") + data
        elif op == "delete":
            assert cs.delete(key) == (model.pop(key, None) is not None)
        elif op == "invalidate":
            cs.invalidate(key)
        else:
            cs.clear()
        assert {k: remote.get(k) for k in remote} == model
        assert all(local.get(k) == model[k] for k in local)
        assert all(middle.get(k) == model[k] for k in middle)
        if not stale:
            assert len(list(local.keys())) <= depth


def test_threads_hammering_few_keys_leave_no_stale_copy() -> None:
    """Writers, readers and deleters race on three keys: nothing raises or hangs, every read
    returns a version some writer wrote, and once they stop every local copy equals the
    remote's object.  (Random interleavings rarely hit the narrow races; the gated tests
    above pin each of those down.)"""

    local, remote = MemoryStore(), MemoryStore()
    cs = CachedStoreFactory(local, remote).build()
    keys = ["h/a", "h/b", "h/c"]
    written: set[bytes] = set()

    def worker(n: int) -> list[bytes]:
        seen = []
        for i in range(300):
            key = keys[(n + i) % 3]
            action = (n * 7 + i) % 5
            if action in (0, 1):
                value = f"{n}:{i}".encode()
                written.add(value)
                cs.put(key, value)
            elif action == 2 and i % 4 == 0:
                cs.delete(key)
            elif action == 3 and i % 2 == 0:
                cs.invalidate(key)
            else:
                value = cs.get(key, None)
                if value is not None:
                    seen.append(value)
        return seen

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows: more interleavings
    try:
        results = run_threads(8, lambda: worker(threading.get_ident() % 97))
    finally:
        sys.setswitchinterval(interval)
    assert all(isinstance(seen, list) for seen in results), results
    assert all(value in written for seen in results for value in seen)
    for key in local:
        assert local.get(key) == remote.get(key), key


# -- third-party contract tolerance and small failures -------------------------------------


def test_a_plain_key_error_from_a_third_party_store_is_a_miss(remote) -> None:
    local = DictStore()  # raises a plain KeyError for a missing key
    cs = CachedStoreFactory(local, remote).build()
    assert cs.get("a/b.txt") == b"hello\nworld\n"  # the local KeyError was a miss
    assert local.entries["a/b.txt"] == b"hello\nworld\n"
    with pytest.raises(KeyNotFoundError, match="DictStore"):
        local.stat("absent")
    assert "absent" not in local
    assert CachedStoreFactory(MemoryStore(), local).build().get("absent", None) is None


def test_every_waiter_gets_its_own_error_chained_to_the_cause(cs, remote) -> None:
    remote.gate = threading.Event()
    remote.fail_reads = StoreError("the remote is down")

    def opener() -> None:
        wait_until(lambda: cs.stats()["coalesced"] == 7)
        remote.gate.set()

    threading.Thread(target=opener, daemon=True).start()
    errors = run_threads(8, lambda: cs.get("a/b.txt"))
    assert all(isinstance(e, RemoteError) and "the remote is down" in str(e) for e in errors)
    assert len({id(error) for error in errors}) == 8
    [leader] = [error for error in errors if error.__cause__ is remote.fail_reads]
    waiters = [error for error in errors if error is not leader]
    assert all(error.__cause__ is leader and str(error) == str(leader) for error in waiters)
    assert all(error.__traceback__ is not leader.__traceback__ for error in waiters)


class FailingInsertPolicy(CachePolicy):
    def __init__(self) -> None:
        self.tracked: set[str] = set()

    def on_insert(self, key: str, stat: EntryStat) -> Sequence[str]:
        raise RuntimeError("the policy's ledger is broken")

    def on_delete(self, key: str) -> None:
        self.tracked.discard(key)


def test_a_policy_whose_on_insert_raises_leaves_no_untracked_copy(local, remote) -> None:
    cs = CachedStoreFactory(local, remote, FailingInsertPolicy()).build()
    assert cs.get("a/b.txt") == b"hello\nworld\n"  # the read is still served
    assert "a/b.txt" not in local
    cs.put("w", b"written")
    assert remote.get("w") == b"written"
    assert "w" not in local
    assert cs.stats()["remote_writes"] == 1


def test_the_spool_of_a_forward_only_stream_is_closed(cs, monkeypatch) -> None:
    from cached_stores_factory import _write

    made: list[Any] = []
    original = _write.new_spool

    def recording() -> Any:
        made.append(original())
        return made[-1]

    monkeypatch.setattr(_write, "new_spool", recording)

    class ForwardOnly(io.RawIOBase):
        def __init__(self) -> None:
            self.left = b"streamed"

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            size = min(len(buffer), len(self.left))
            buffer[:size], self.left = self.left[:size], self.left[size:]
            return size

    cs.put_stream("f", ForwardOnly())
    assert cs.get("f") == b"streamed"
    assert len(made) == 1 and made[0].closed


def test_an_entry_evicted_before_its_waiters_open_it_costs_no_second_fetch(local, remote) -> None:
    """A concurrent insert evicts the new entry between the fetch and its readers."""
    policy = DepthPolicy(1)
    cs = CachedStoreFactory(local, remote, policy).build()
    remote.put("other", b"other")
    remote.gate = threading.Event()
    results: list[Any] = []

    def evict_then_open() -> None:
        wait_until(lambda: cs.stats()["coalesced"] == 3)
        remote.gate.set()

    threading.Thread(target=evict_then_open, daemon=True).start()
    original_insert = policy.on_insert

    def insert_and_evict(key: str, stat: EntryStat) -> Sequence[str]:
        victims = list(original_insert(key, stat))
        if key == "a/b.txt":
            remote.gate = None
            cs.get("other")  # evicts a/b.txt before any waiter opens it
        return victims

    policy.on_insert = insert_and_evict  # type: ignore[method-assign]
    results = run_threads(4, lambda: cs.get("a/b.txt"))
    assert results == [b"hello\nworld\n"] * 4
    assert "a/b.txt" not in local
    assert remote.calls["open_read"] == 2  # a/b.txt once, other once


@pytest.mark.parametrize("mode", ["rb", "r"])
def test_a_read_only_open_refuses_writes_as_a_file_does(cs, remote, mode: str) -> None:
    for _ in range(2):  # a miss, then a hit
        with cs.open("a/b.txt", mode) as handle:
            assert not handle.writable()
            with pytest.raises(io.UnsupportedOperation):
                handle.write(b"lost" if "b" in mode else "lost")
    assert remote.get("a/b.txt") == b"hello\nworld\n"
