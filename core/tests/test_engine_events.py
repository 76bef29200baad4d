"""The engine tells the event listeners what it did, and makes no event while nobody listens.

Pure logic over memory stores: which events, in which order, with which fields.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cached_stores_factory import CachedStore, CachedStoreFactory, MemoryStore, _engine, _resilience
from cached_stores_factory.caches.LRU_cache import LRUCache
from cached_stores_factory.caches.TTL_cache import TTLCache
from cached_stores_factory.errors import StoreError
from cached_stores_factory.events import Event, dispatcher
from cached_stores_factory.testing.policies import ManualClock


@pytest.fixture
def heard() -> Iterator[list[Event]]:
    events: list[Event] = []
    dispatcher.subscribe(events.append)
    yield events
    dispatcher.unsubscribe(events.append)


def test_reads_writes_and_evictions_are_told_in_order(heard: list[Event]) -> None:
    remote = MemoryStore()
    remote.put("a", b"1")
    cached = CachedStoreFactory(MemoryStore(), remote, LRUCache(1)).build()
    assert cached.get("a") == b"1"  # fetched: a miss
    assert cached.get("a") == b"1"  # a hit
    cached.put("b", b"22")  # written; a depth of one evicts a's copy
    assert [(e.kind, e.key, e.size) for e in heard] == [
        ("fetch", "a", 1),
        ("miss", "a", 1),
        ("hit", "a", 1),
        ("write", "b", 2),
        ("eviction", "a", None),
    ]
    assert all(e.source is cached for e in heard)
    timed = {e.kind: e.seconds for e in heard if e.seconds is not None}
    assert set(timed) == {"miss", "hit", "write"}
    assert all(seconds >= 0 for seconds in timed.values())


def test_a_revalidation_says_whether_the_remote_changed(heard: list[Event]) -> None:
    clock = ManualClock()
    remote = MemoryStore()  # no conditional reads: every revalidation sends the object
    remote.put("k", b"v1")
    cached = CachedStoreFactory(MemoryStore(clock=clock), remote, TTLCache(10, clock=clock))
    store = cached.build()
    store.get("k")
    clock.advance(11)
    store.get("k")
    assert [e.kind for e in heard] == ["fetch", "miss", "fetch", "changed", "miss"]
    changed = heard[3]
    assert (changed.size, changed.seconds is not None) == (2, True)


class FailingStore(MemoryStore):
    """A local store that fails while `down` is set."""

    down = False

    def open_read(self, key: str) -> object:  # type: ignore[override]
        if self.down:
            raise StoreError("disk gone")
        return super().open_read(key)


def test_a_store_going_down_and_coming_back_is_told_once_each(heard: list[Event]) -> None:
    local, remote = FailingStore(), MemoryStore()
    remote.put("k", b"v")
    clock = ManualClock()
    cached = CachedStore(local, remote)
    cached.tier.outage._clock = clock
    cached.get("k")  # a local copy
    local.down = True
    cached.get("k")  # served by the remote
    cached.get("k")  # the local store is skipped during the back-off: no second event
    local.down = False
    clock.advance(60)
    cached.get("k")  # the local copy again
    changes = [(e.kind, e.role, e.source) for e in heard if e.kind.startswith("store_")]
    assert changes == [("store_down", "local", local), ("store_up", "local", local)]
    [down] = [e for e in heard if e.kind == "store_down"]
    assert str(down.error) == "disk gone"


def test_nobody_listening_makes_no_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine checks for listeners before it makes an event: none is ever built."""

    def no_event(*args: object, **kwargs: object) -> Event:
        raise AssertionError("an event was made while nobody listened")

    monkeypatch.setattr(dispatcher, "listeners", ())
    monkeypatch.setattr(_engine, "Event", no_event)
    monkeypatch.setattr(_resilience, "Event", no_event)
    local, remote = FailingStore(), MemoryStore()
    remote.put("a", b"1")
    cached = CachedStoreFactory(local, remote, LRUCache(1)).build()
    assert cached.get("a") == b"1"
    assert cached.get("a") == b"1"
    cached.put("b", b"2")
    local.down = True
    assert cached.get("b") == b"2"
    assert cached.stats()["hits"] == 1
