"""Coherence of one key between a fetch and a change, lifetimes, and honest errors.

Several cached stores over one shared MemoryStore stand for several processes sharing a
local tier: the memory store fences exactly as the tempfile and Redis stores do across
processes (their own tests show that with real processes).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from typing import IO, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cached_stores_factory import (
    CachedStore,
    CachePolicy,
    EntryReader,
    EntryStat,
    JsonSerializer,
    MemoryStore,
)
from cached_stores_factory.errors import (
    InvalidKeyError,
    KeyNotFoundError,
    LocalStoreUnavailableError,
    StoreClosedError,
    StoreError,
)

WAIT = 10.0  # seconds a test waits for another thread before it gives up (never a timing check)


class GatedRemote(MemoryStore):
    """A remote whose reads can be held at a gate, as a fetch stalled past its lease."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.reads = 0

    def open_read(self, key: str) -> EntryReader:
        self.reads += 1
        entry = super().open_read(key)  # the version as of the request
        if self.gate is not None:
            self.entered.set()
            assert self.gate.wait(WAIT), "the test never opened the gate"
        return entry


class FailingLocal(MemoryStore):
    """A shared local store that can go down, as Redis flapping or a full disk."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreError("local store down")

    def open_read(self, key: str) -> EntryReader:
        self._check()
        return super().open_read(key)

    def begin_change(self, key: str, *, hold: float) -> tuple[bool, str]:
        self._check()
        return super().begin_change(key, hold=hold)

    def fence(self, key: str) -> str | None:
        self._check()
        return super().fence(key)


@pytest.fixture
def remote() -> GatedRemote:
    store = GatedRemote()
    store.put("k", b"v1")
    return store


def stalled_fetch(cached: CachedStore, remote: GatedRemote) -> Iterator[threading.Thread]:
    """Start a read of "k" that has asked the remote and waits at the gate; yield its thread."""
    remote.gate = threading.Event()
    results: list[bytes | None] = []
    reader = threading.Thread(target=lambda: results.append(cached.get("k", None)), daemon=True)
    reader.start()
    assert remote.entered.wait(WAIT)
    yield reader
    remote.gate.set()
    reader.join(WAIT)
    # The stalled read overlapped the change: either version is a right answer for it.
    assert len(results) == 1 and results[0] in (b"v1", b"v2", None)
    remote.gate = None


def test_a_stalled_fetch_never_stores_over_a_write_made_elsewhere(remote) -> None:
    """Why 1: A fetches v1 and stalls (its lease lapsed); B writes v2; A resumes."""
    shared = MemoryStore()
    process_a, process_b = CachedStore(shared, remote), CachedStore(shared, remote)
    for _ in stalled_fetch(process_a, remote):
        process_b.put("k", b"v2")
    assert shared.get("k") == b"v2"
    fresh_process = CachedStore(shared, remote)
    assert fresh_process.get("k") == b"v2"


def test_a_stalled_fetch_never_stores_after_a_delete_made_elsewhere(remote) -> None:
    shared = MemoryStore()
    process_a, process_b = CachedStore(shared, remote), CachedStore(shared, remote)
    for _ in stalled_fetch(process_a, remote):
        process_b.delete("k")
    assert "k" not in shared
    with pytest.raises(KeyNotFoundError):
        CachedStore(shared, remote).get("k")


@pytest.mark.parametrize("drop", ["invalidate", "clear", "purge"])
def test_a_fetch_in_flight_stores_nothing_after_an_invalidation(remote, drop) -> None:
    """Why 3: the old bytes were stored after the invalidation and served as fresh hits."""
    shared = MemoryStore()

    class AllExpired(CachePolicy):
        def expired(self) -> Iterator[str]:
            return iter(["k"])

    cached = CachedStore(shared, remote, AllExpired())
    shared.put("k", b"v0")  # a copy for clear() and purge() to find
    cached.invalidate("k")
    for _ in stalled_fetch(cached, remote):
        remote.put("k", b"v2")  # changed by another client: the cache is told to drop it
        shared.put("k", b"v1")  # as another process's fetch would have stored it
        assert {
            "invalidate": cached.invalidate,
            "clear": lambda _k: cached.clear(),
            "purge": lambda _k: cached.purge(),
        }[drop]("k")
    assert "k" not in shared
    assert cached.get("k") == b"v2"


def test_a_fetch_elsewhere_of_a_key_with_no_copy_stores_nothing_after_a_clear(remote) -> None:
    """B fetches v1 of a key nobody cached and stalls; another client writes v2 and A
    clears the cache (so finds no copy of the key to fence); B resumes."""
    shared = MemoryStore()
    process_a, process_b = CachedStore(shared, remote), CachedStore(shared, remote)
    for _ in stalled_fetch(process_b, remote):
        remote.put("k", b"v2")
        assert process_a.clear() == 0
    assert "k" not in shared
    assert process_a.get("k") == b"v2"


def test_a_write_the_local_store_cannot_mark_fails_before_the_remote_changes(remote) -> None:
    """Why 2: a write during a local outage left the old copy for every other process."""
    shared = FailingLocal()
    reader, writer = CachedStore(shared, remote), CachedStore(shared, remote)
    assert reader.get("k") == b"v1"  # cached
    shared.down = True
    with pytest.raises(
        LocalStoreUnavailableError, match=r"'k' was not written.*remote is unchanged"
    ):
        writer.put("k", b"v2")
    assert remote.get("k") == b"v1"
    shared.down = False
    assert CachedStore(shared, remote).get("k") == b"v1"


def test_availability_writes_through_an_outage_and_bypasses_the_key_here(remote) -> None:
    shared = FailingLocal()
    writer = CachedStore(shared, remote, availability=True)
    assert writer.get("k") == b"v1"
    shared.down = True
    writer.put("k", b"v2")
    assert remote.get("k") == b"v2"
    shared.down = False
    assert writer.get("k") == b"v2"  # bypassed here until its old copy is dropped
    # The weaker promise it opted into: another process may be served the old copy.
    assert CachedStore(shared, remote).get("k") == b"v1"


def test_a_write_that_ended_in_a_local_outage_says_so_and_leaves_the_key_marked() -> None:
    """The writer's local store failed after the remote changed: others store nothing."""
    remote = MemoryStore()
    remote.put("k", b"v1")

    class DownAfterRemote(MemoryStore):
        def end_change(self, key: str, mark: str) -> str | None:
            raise StoreError("local store down")

    shared = DownAfterRemote()
    with pytest.raises(LocalStoreUnavailableError, match="'k' was written to the remote, but"):
        CachedStore(shared, remote).put("k", b"v2")
    assert remote.get("k") == b"v2"
    assert shared.fence("k") is None  # marked changing until the mark lapses
    other = CachedStore(shared, remote)
    assert other.get("k") == b"v2"
    assert "k" not in shared


def test_the_coordinator_remembers_only_what_is_cached_or_in_flight() -> None:
    """Why 9: one record per key ever inserted (2000 records for 0 cached under Redis ex=1)."""

    class Undated(MemoryStore):
        """Reports no stored time, and loses every entry, as an expiring store would."""

        def open_read(self, key: str) -> EntryReader:
            entry = super().open_read(key)
            return EntryReader(entry.stream, entry.stat._replace(modified=None))

        def put_fenced(
            self, key: str, stream: IO[bytes], *, etag: str | None, fence: str
        ) -> EntryStat | None:
            stat = super().put_fenced(key, stream, etag=etag, fence=fence)
            return None if stat is None else stat._replace(modified=None)

    remote, local = MemoryStore(), Undated()
    cached = CachedStore(local, remote)
    for index in range(500):
        remote.put(f"k{index}", b"x")
        assert cached.get(f"k{index}") == b"x"
    assert len(cached.coordinator) == 500  # dated by the engine: one record per cached copy
    for index in range(500):
        local.delete(f"k{index}")  # expired by the store itself
        assert cached.get(f"k{index}") == b"x"  # a miss: the stale record goes, a new one comes
    cached.clear()
    assert len(cached.coordinator) == 0
    for index in range(500):
        cached.put(f"w{index}", b"y")
        cached.delete(f"w{index}")
    assert len(cached.coordinator) == 0


CALLS: dict[str, Any] = {
    "get": lambda cs: cs.get("k"),
    "open": lambda cs: cs.open("k", "rb"),
    "open for writing": lambda cs: cs.open("k", "wb"),
    "put": lambda cs: cs.put("k", b"x"),
    "delete": lambda cs: cs.delete("k"),
    "stat": lambda cs: cs.stat("k"),
    "contains": lambda cs: "k" in cs,
    "keys": lambda cs: list(cs.keys()),
    "invalidate": lambda cs: cs.invalidate("k"),
    "clear": lambda cs: cs.clear(),
    "purge": lambda cs: cs.purge(),
}


@pytest.mark.parametrize("call", CALLS)
def test_every_call_after_close_raises_store_closed(remote, call) -> None:
    """Why 8: after close() an LRU raised RuntimeError and a TTL kept working."""
    cached = CachedStore(MemoryStore(), remote)
    cached.get("k")
    cached.close()
    cached.close()  # idempotent
    with pytest.raises(StoreClosedError, match="closed"):
        CALLS[call](cached)


class ServedStale(CachePolicy):
    """Every copy is expired, and within its stale-while-revalidate window: refreshed."""

    stale_while_revalidate = 60.0

    def is_fresh(self, key: str, stat: EntryStat) -> bool:
        return False

    def expired_for(self, key: str, stat: EntryStat) -> float:
        return 1.0


def test_a_dropped_store_leaves_no_refresh_thread_behind(remote) -> None:
    local = MemoryStore()
    cached = CachedStore(local, remote, ServedStale())
    local.put("k", b"v0")
    cached.get("k")  # served stale, refreshed in the background
    cached.close()
    del cached
    gc.collect()
    for thread in threading.enumerate():
        if thread.name == "csf-refresh":
            thread.join(WAIT)
    assert not [t for t in threading.enumerate() if t.name == "csf-refresh" and t.is_alive()]


def test_a_serializer_bug_is_not_taken_for_a_missing_key(remote) -> None:
    """Why 10: any KeyError inside the engine became "no entry for key", even with a default."""

    class Broken(JsonSerializer):
        def loads(self, data: bytes) -> Any:
            return {}["missing field"]

    remote.put("k", b"{}")
    cached = CachedStore(MemoryStore(), remote, serializer=Broken())
    with pytest.raises(KeyError) as raised:
        cached.get("k", None)
    assert not isinstance(raised.value, KeyNotFoundError)
    assert "missing field" in str(raised.value)


@given(
    key=st.one_of(
        st.lists(st.text()), st.dictionaries(st.text(), st.text()), st.sets(st.integers())
    )
)
def test_an_unhashable_key_is_an_invalid_key(key) -> None:
    cached = CachedStore(MemoryStore(), MemoryStore())
    for call in (cached.get, cached.invalidate, cached.open, cached.stat, cached.delete):
        with pytest.raises(InvalidKeyError, match="must be a str"):
            call(key)
    with pytest.raises(InvalidKeyError, match="must be a str"):
        MemoryStore().get(key)


def test_a_background_refresh_that_fails_unexpectedly_is_logged_with_its_cause(
    caplog, remote
) -> None:
    class Buggy(ServedStale):
        def admits(self, size: int | None) -> bool:
            raise ZeroDivisionError("a policy bug")

    local = MemoryStore()
    local.put("k", b"v0")
    cached = CachedStore(local, remote, Buggy())
    with caplog.at_level(logging.WARNING, logger="cached_stores_factory"):
        assert cached.get("k") == b"v0"
        logged = threading.Event()
        for _ in range(int(WAIT / 0.05)):
            if any("a policy bug" in r.getMessage() for r in caplog.records):
                break
            logged.wait(0.05)
    assert any(
        "refreshing 'k' in the background failed" in r.getMessage()
        and "a policy bug" in r.getMessage()
        for r in caplog.records
    )
