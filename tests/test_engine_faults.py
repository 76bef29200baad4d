"""The engine when stores fail or change: revalidation, stale windows, a local store that is
down, corrupt copies.  Memory stores and small doubles: counts and values, never timings."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import IO

import pytest

from cached_stores_factory import (
    CachedStore,
    CachedStoreFactory,
    EntryReader,
    EntryStat,
    MemoryStore,
    _resilience,
)
from cached_stores_factory.errors import (
    CorruptEntryError,
    LocalStoreUnavailableError,
    RemoteError,
    StoreError,
)
from cached_stores_factory_policies import LRUCache, TTLCache

WAIT = 10.0


class Clock:
    """A policy clock the test moves by hand, starting at the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Origin(MemoryStore):
    """A remote with S3's manners: etags, conditional reads, and outages on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.down: Exception | None = None
        self.gate: threading.Event | None = None

    def _check(self, call: str) -> None:
        self.calls[call] += 1
        if self.gate is not None:
            assert self.gate.wait(WAIT)
        if self.down is not None:
            raise self.down

    def _stamp(self, data: bytes, etag: str | None) -> EntryStat:
        etag = hashlib.md5(data).hexdigest()
        return super()._stamp(data, etag)

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        self.calls["put_stream"] += 1
        return super().put_stream(key, stream, etag=etag)

    def open_read(self, key: str) -> EntryReader:
        self._check("open_read")
        return super().open_read(key)

    def open_read_if_changed(self, key: str, etag: str) -> EntryReader | None:
        self._check("open_read_if_changed")
        entry = super().open_read(key)
        return None if entry.stat.etag == etag else entry


class Flaky(MemoryStore):
    """A local store that can be down: every call raises StoreError, and is counted."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreError("the local store is down")

    def open_read(self, key: str) -> EntryReader:
        self._check()
        return super().open_read(key)

    def stat(self, key: str) -> EntryStat:
        self._check()
        return super().stat(key)

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        self._check()
        return super().put_stream(key, stream, etag=etag)

    def delete(self, key: str) -> bool:
        self._check()
        return super().delete(key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        self._check()
        return super().keys(prefix)

    def fence(self, key: str) -> str | None:
        self._check()
        return super().fence(key)

    def put_fenced(
        self, key: str, stream: IO[bytes], *, etag: str | None, fence: str
    ) -> EntryStat | None:
        self._check()
        return super().put_fenced(key, stream, etag=etag, fence=fence)

    def begin_change(self, key: str, *, hold: float) -> tuple[bool, str]:
        self._check()
        return super().begin_change(key, hold=hold)

    def end_change(self, key: str, mark: str) -> str | None:
        self._check()
        return super().end_change(key, mark)


@pytest.fixture
def origin() -> Origin:
    store = Origin()
    store.put("k", b"version 1")
    return store


def build(origin: Origin, **policy: float) -> tuple[CachedStore, MemoryStore, Clock]:
    """A TTL of 10 s over a memory store, both on a clock the test moves."""
    clock = Clock()
    local = MemoryStore(clock=clock)
    ttl = TTLCache(interval=10.0, clock=clock, **policy)
    return CachedStoreFactory(local, origin, ttl).build(), local, clock


# -- revalidation ----------------------------------------------------------------------------


def test_an_unchanged_expired_copy_is_revalidated_without_its_body(origin) -> None:
    cs, _, clock = build(origin)
    assert cs.get("k") == b"version 1"
    fetched = cs.stats()["bytes_from_remote"]
    clock.now += 11
    assert cs.get("k") == b"version 1"
    stats = cs.stats()
    assert origin.calls["open_read_if_changed"] == 1
    assert stats["revalidated"] == 1
    assert stats["remote_reads"] == 1 and stats["bytes_from_remote"] == fetched
    # Re-stamped fresh: the next read is a hit that asks the remote nothing.
    assert cs.get("k") == b"version 1"
    assert origin.calls["open_read_if_changed"] == 1 and cs.stats()["hits"] == 1


def test_a_changed_object_replaces_the_expired_copy(origin) -> None:
    cs, local, clock = build(origin)
    cs.get("k")
    origin.put("k", b"version 2")
    clock.now += 11
    assert cs.get("k") == b"version 2"
    assert local.get("k") == b"version 2"
    assert cs.stats()["revalidated"] == 0 and cs.stats()["remote_reads"] == 2


def test_an_object_deleted_from_the_remote_drops_the_expired_copy(origin) -> None:
    cs, local, clock = build(origin)
    cs.get("k")
    origin.delete("k")
    clock.now += 11
    assert cs.get("k", None) is None
    assert "k" not in local


# -- stale-if-error ----------------------------------------------------------------------------


def test_stale_if_error_serves_the_expired_copy_while_the_remote_fails(origin, caplog) -> None:
    cs, _, clock = build(origin, stale_if_error=60.0)
    cs.get("k")
    origin.down = StoreError("connection refused")
    clock.now += 30  # 20 s past expiry: inside the window
    with caplog.at_level(logging.WARNING, "cached_stores_factory"):
        assert [cs.get("k") for _ in range(3)] == [b"version 1"] * 3
    assert cs.stats()["stale_served"] == 3
    outages = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(outages) == 1  # logged once per outage, not per read
    assert outages[0].endswith("; each later call tries it again")
    clock.now += 60  # 80 s past expiry: outside
    with pytest.raises(RemoteError, match="connection refused") as raised:
        cs.get("k")
    assert repr(origin) in str(raised.value)  # names the store
    origin.down = None
    with caplog.at_level(logging.WARNING, "cached_stores_factory"):
        assert cs.get("k") == b"version 1"
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_without_stale_if_error_a_failing_remote_raises(origin) -> None:
    cs, _, clock = build(origin)
    cs.get("k")
    origin.down = StoreError("connection refused")
    clock.now += 11
    with pytest.raises(RemoteError):
        cs.get("k")


# -- stale-while-revalidate --------------------------------------------------------------------


def test_stale_while_revalidate_serves_at_once_and_refreshes_once(origin) -> None:
    cs, local, clock = build(origin, stale_while_revalidate=60.0)
    cs.get("k")
    origin.put("k", b"version 2")
    clock.now += 11
    origin.gate = threading.Event()  # the refresh waits until every read is served
    served = [cs.get("k") for _ in range(10)]
    assert served == [b"version 1"] * 10
    assert cs.stats()["stale_served"] == 10
    origin.gate.set()
    deadline = time.monotonic() + WAIT
    while local.get("k") != b"version 2":
        assert time.monotonic() < deadline, "the background refresh never happened"
        time.sleep(0.01)
    assert origin.calls["open_read_if_changed"] == 1  # one refresh for ten stale reads
    assert origin.calls["open_read"] == 1  # the first fetch only
    assert cs.get("k") == b"version 2"


def test_the_stale_windows_need_a_ttl_on_bounded_policies() -> None:
    with pytest.raises(ValueError, match="need a ttl"):
        LRUCache(depth=3, stale_if_error=5.0)
    with pytest.raises(ValueError, match=">= 0 seconds"):
        TTLCache(interval=1.0, stale_while_revalidate=-1)


# -- a local store that is down ----------------------------------------------------------------


@pytest.fixture
def flaky() -> Flaky:
    return Flaky()


def test_a_down_local_store_refuses_writes_before_the_remote_changes(flaky, origin) -> None:
    cs = CachedStoreFactory(flaky, origin, LRUCache(depth=5)).build()
    cs.get("k")
    flaky.down = True
    assert cs.get("k") == b"version 1"  # reads go on, from the remote
    with pytest.raises(LocalStoreUnavailableError, match="'k' was not written"):
        cs.put("k", b"version 2")
    with pytest.raises(LocalStoreUnavailableError, match="'k' was not written"):
        cs.delete("k")
    with pytest.raises(LocalStoreUnavailableError), cs.open("k", "wb") as handle:
        handle.write(b"version 3")
    assert origin.get("k") == b"version 1"
    assert origin.calls["put_stream"] == 0 and origin.calls["delete"] == 0


def test_a_down_local_store_is_a_slow_cache_with_availability(flaky, origin, caplog) -> None:
    cs = CachedStoreFactory(flaky, origin, LRUCache(depth=5), availability=True).build()
    cs.get("k")
    flaky.down, flaky.calls = True, 0
    with caplog.at_level(logging.WARNING, "cached_stores_factory"):
        for _ in range(5):
            assert cs.get("k") == b"version 1"
        assert "k" in cs and "absent" not in cs
        assert cs.stat("k").size == 9
        with cs.open("new", "x") as handle:  # x mode checks the remote instead
            handle.write("created")
        cs.put("k", b"version 2")
    assert origin.get("new") == b"created"
    assert origin.calls["put_stream"] == 2  # one upload each, never a second
    assert flaky.calls == 1  # skipped during the back-off, not asked on every call
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "local store" in warnings[0].getMessage()
    assert warnings[0].exc_info is None  # a line, not a traceback


def test_caching_resumes_when_the_local_store_answers_again(
    flaky, origin, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(_resilience, "BACKOFF_FIRST", 0.0)  # retry on the next call
    cs = CachedStoreFactory(flaky, origin, availability=True).build()
    cs.get("k")  # a local copy of version 1
    flaky.down = True
    cs.put("k", b"version 2")  # the old copy could not be dropped: the key is bypassed
    assert cs.get("k") == b"version 2"
    flaky.down = False
    assert MemoryStore.get(flaky, "k") == b"version 1"  # still there, never served
    with caplog.at_level(logging.WARNING, "cached_stores_factory"):
        assert cs.get("k") == b"version 2"
        assert cs.get("k") == b"version 2"
    assert MemoryStore.get(flaky, "k") == b"version 2"  # cached again
    assert cs.stats()["hits"] >= 1
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_a_failed_local_write_after_the_remote_one_still_serves_the_new_value(
    flaky, origin
) -> None:
    cs = CachedStoreFactory(flaky, origin).build()
    cs.get("k")

    def refuse(key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        raise StoreError("disk full")

    flaky.put_stream = refuse  # type: ignore[method-assign]
    cs.put("k", b"version 2")  # succeeds: the remote holds it
    assert origin.calls["put_stream"] == 1
    del flaky.put_stream
    assert cs.get("k") == b"version 2"


def test_a_policy_over_a_down_store_still_builds(flaky, origin) -> None:
    flaky.down = True
    cs = CachedStoreFactory(flaky, origin, LRUCache(depth=3)).build()
    assert cs.get("k") == b"version 1"


# -- corrupt copies ----------------------------------------------------------------------------


class Corrupting(MemoryStore):
    """Reports its entries corrupt, at open or halfway through reading them."""

    def __init__(self) -> None:
        super().__init__()
        self.at_open: set[str] = set()
        self.mid_read: set[str] = set()

    def open_read(self, key: str) -> EntryReader:
        if key in self.at_open:
            self.at_open.discard(key)
            raise CorruptEntryError(f"the entry for {key!r} is corrupt")
        entry = super().open_read(key)
        if key in self.mid_read:
            self.mid_read.discard(key)

            class Torn:
                def read(self, size: int = -1) -> bytes:
                    raise CorruptEntryError(f"the entry for {key!r} is corrupt")

                def close(self) -> None:
                    pass

            return EntryReader(Torn(), entry.stat)  # type: ignore[arg-type]
        return entry


@pytest.mark.parametrize("where", ["at_open", "mid_read"])
def test_a_corrupt_copy_is_dropped_and_fetched_again(origin, where: str) -> None:
    local = Corrupting()
    cs = CachedStoreFactory(local, origin).build()
    cs.get("k")
    getattr(local, where).add("k")
    assert cs.get("k") == b"version 1"
    assert origin.calls["open_read"] == 2
    assert cs.get("k") == b"version 1"  # cached again: a hit
    assert origin.calls["open_read"] == 2
