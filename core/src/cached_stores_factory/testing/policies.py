"""The policy conformance suite: what every CachePolicy must do, first- or third-party.

Subclass `PolicyConformance` in a test module and provide one fixture, `make_policy`: a
callable that returns a new policy, configured the same way each time (the suite calls it
again to simulate a restart)::

    from cached_stores_factory.testing.policies import PolicyConformance

    class TestMyPolicy(PolicyConformance):
        max_entries = 8          # optional: the bound your policy promises, if any

        @pytest.fixture
        def make_policy(self):
            return lambda: MyPolicy(depth=8)

The suite moves time by setting the policy's `clock` attribute (every CachePolicy has
one) to a `ManualClock`, which also stamps the local store's entries.  The local store is
a MemoryStore; override the `local_store` fixture (taking `clock`) to run the suite over
another store that reports `modified` from that clock.  The hit-path test records the calls
to whatever store that fixture gives (`record_calls`), so it runs over every store.
"""

from __future__ import annotations

import io
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from .._engine import CachedStore
from .._factory import CachedStoreFactory
from .._policy import CachePolicy
from .._store import EntryStat, Store
from ..errors import KeyNotFoundError
from ..stores.memory_store import MemoryStore

__all__ = ["ManualClock", "PolicyConformance", "RecordingStore", "record_calls"]

MakePolicy = Callable[[], CachePolicy]


class ManualClock:
    """Time that moves only when told, plus a microsecond per reading, so none tie."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self._readings = 0

    def __call__(self) -> float:
        self._readings += 1
        return self.now + self._readings * 1e-6

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingStore(MemoryStore):
    """A memory store that counts calls to it, to prove the hit path leaves it alone."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        super().__init__(clock=clock)
        self.calls = 0

    def get(self, key: str) -> bytes:
        self.calls += 1
        return super().get(key)

    def stat(self, key: str) -> EntryStat:
        self.calls += 1
        return super().stat(key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        self.calls += 1
        return super().keys(prefix)

    def __contains__(self, key: object) -> bool:
        self.calls += 1
        return super().__contains__(key)


STORE_METHODS = (
    "get",
    "put",
    "delete",
    "keys",
    "stat",
    "open_read",
    "open_read_if_changed",
    "put_stream",
    "__contains__",
)
"""The Store methods `record_calls` counts: every one that reaches the backend."""


def record_calls(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each call to `store`'s methods, by name, until the test ends.

    The store's class is patched (through `monkeypatch`, so it is restored), not the store:
    any store works, slotted or not, `isinstance` checks still hold, and `key in store` is
    seen too.  Calls to other instances of the class are recorded as well.
    """
    calls: list[str] = []
    cls = type(store)
    for name in STORE_METHODS:
        method = getattr(cls, name)

        def recorded(*args: Any, _name: str = name, _method: Any = method, **kwargs: Any) -> Any:
            calls.append(_name)
            return _method(*args, **kwargs)

        monkeypatch.setattr(cls, name, recorded)
    return calls


def _contents(store: Store) -> dict[str, bytes]:
    return {key: store.get(key) for key in list(store.keys())}


def _value(key: str, version: int) -> bytes:
    return f"{key}:{version};".encode() * (1 + version % 7)


class PolicyConformance:
    """Freshness, eviction of local copies only, restarts, purge, threads, a cheap hit path."""

    max_entries: ClassVar[int | None] = None
    """The most entries the policy lets the local store hold, if it promises a bound."""

    @pytest.fixture
    def make_policy(self) -> MakePolicy:
        raise NotImplementedError("provide a `make_policy` fixture: () -> a new policy")

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def local_store(self, clock: ManualClock) -> Store:
        return RecordingStore(clock=clock)

    @pytest.fixture
    def remote(self) -> MemoryStore:
        return MemoryStore()

    @pytest.fixture
    def build(
        self, make_policy: MakePolicy, clock: ManualClock, local_store: Store, remote: MemoryStore
    ) -> Iterator[Callable[[], CachedStore]]:
        """Build a cached store with a new policy on the shared clock; close them all after."""
        built: list[CachedStore] = []

        def build() -> CachedStore:
            policy = make_policy()
            policy.clock = clock
            built.append(CachedStoreFactory(local_store, remote, policy).build())
            return built[-1]

        yield build
        for cached in built:
            cached.policy.close()

    def _churn(self, cached: CachedStore, written: dict[str, bytes], steps: int, seed: int) -> None:
        """Random writes and reads; every read must return the bytes last written."""
        rng = random.Random(seed)
        for step in range(steps):
            key = f"k{rng.randrange(20)}"
            if rng.random() < 0.5 or key not in written:
                written[key] = _value(key, step)
                cached.put_stream(key, io.BytesIO(written[key]))
            else:
                with cached.open_read(key) as entry:
                    assert entry.read() == written[key]
            if self.max_entries is not None:
                assert len(list(cached.local.keys())) <= self.max_entries

    def test_a_new_entry_is_served_locally(self, build: Callable[[], CachedStore]) -> None:
        cached = build()
        cached.put_stream("fresh/one", io.BytesIO(b"payload"))
        reads = cached.stats()["remote_reads"]
        for _ in range(3):
            with cached.open_read("fresh/one") as entry:
                assert entry.read() == b"payload"
        assert cached.stats()["remote_reads"] == reads
        assert cached.stats()["hits"] == 3

    def test_a_fetched_entry_is_served_locally(
        self, build: Callable[[], CachedStore], remote: MemoryStore
    ) -> None:
        remote.put("fetched", b"from the remote")
        cached = build()
        for _ in range(3):
            assert cached.get("fetched") == b"from the remote"
        assert cached.stats()["remote_reads"] == 1

    def test_the_hit_path_leaves_the_store_alone(
        self, build: Callable[[], CachedStore], local_store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Whatever store the `local_store` fixture gives: its class's methods are counted."""
        cached = build()
        cached.put("hot", b"x")
        stat = local_store.stat("hot")
        calls = record_calls(local_store, monkeypatch)
        for _ in range(10):
            assert cached.policy.is_fresh("hot", stat)
            cached.policy.on_hit("hot", stat)
        assert calls == [], f"is_fresh and on_hit called the local store: {calls}"

    def test_eviction_removes_local_copies_only(
        self, build: Callable[[], CachedStore], remote: MemoryStore
    ) -> None:
        cached = build()
        written: dict[str, bytes] = {}
        self._churn(cached, written, steps=200, seed=1)
        assert _contents(remote) == written
        assert set(cached.local.keys()) <= set(written)
        for key, data in written.items():
            assert cached.get(key) == data

    def test_restart_keeps_serving_the_right_bytes(
        self, build: Callable[[], CachedStore], remote: MemoryStore
    ) -> None:
        first = build()
        written: dict[str, bytes] = {}
        self._churn(first, written, steps=60, seed=2)
        first.policy.close()
        second = build()
        self._churn(second, written, steps=60, seed=3)
        for key, data in written.items():
            assert second.get(key) == data
        assert _contents(remote) == written

    def test_close_is_idempotent(self, build: Callable[[], CachedStore]) -> None:
        cached = build()
        cached.put("k", b"v")
        cached.policy.close()
        cached.policy.close()

    def test_unknown_keys_are_harmless(
        self, build: Callable[[], CachedStore], local_store: Store
    ) -> None:
        cached = build()
        cached.policy.on_delete("never/stored")
        assert cached.invalidate("never/stored") is False
        local_store.put("stored/behind/its/back", b"data")
        stat = local_store.stat("stored/behind/its/back")
        if cached.policy.is_fresh("stored/behind/its/back", stat):
            cached.policy.on_hit("stored/behind/its/back", stat)
        assert cached.get("stored/behind/its/back", None) in (None, b"data")

    def test_staleness_does_not_wear_off(
        self, build: Callable[[], CachedStore], clock: ManualClock, local_store: Store
    ) -> None:
        cached = build()
        cached.put("aging", b"x")
        stat = local_store.stat("aging")
        was_fresh = True
        for _ in range(12):
            fresh = cached.policy.is_fresh("aging", stat)
            assert was_fresh or not fresh, "an entry became fresh again as time passed"
            was_fresh = fresh
            clock.advance(3600.0 * 24 * 3)  # 3 days per step

    def test_purge_removes_only_stale_copies(
        self, build: Callable[[], CachedStore], clock: ManualClock, remote: MemoryStore
    ) -> None:
        cached = build()
        written: dict[str, bytes] = {}
        self._churn(cached, written, steps=40, seed=4)
        clock.advance(3600.0 * 24 * 365)
        cached.put("newest", b"just now")
        written["newest"] = b"just now"
        held = set(cached.local.keys())
        expired = set(cached.policy.expired())  # the base class's default lists none
        assert expired <= held
        for key in expired:
            assert not cached.policy.is_fresh(key, cached.local.stat(key))
        assert "newest" not in expired
        assert cached.purge() == len(expired)
        assert set(cached.local.keys()) == held - expired
        assert _contents(remote) == written

    def test_an_entry_gone_from_the_store_is_fetched_again(
        self, build: Callable[[], CachedStore], local_store: Store
    ) -> None:
        cached = build()
        cached.put("vanishing", b"v1")
        local_store.delete("vanishing")  # dropped by the store itself (Redis expiry, a user)
        assert cached.get("vanishing") == b"v1"
        assert cached.stats()["remote_reads"] == 1
        with pytest.raises(KeyNotFoundError):
            cached.get("never/written")

    def test_threads_share_one_policy(self, build: Callable[[], CachedStore]) -> None:
        cached = build()
        errors: list[BaseException] = []

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for step in range(150):
                    key = f"t{rng.randrange(12)}"
                    if rng.random() < 0.4:
                        cached.put_stream(key, io.BytesIO(_value(key, step)))
                    else:
                        data = cached.get(key, None)
                        assert data is None or data.startswith(key.encode() + b":")
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        if self.max_entries is not None:
            assert len(list(cached.local.keys())) <= self.max_entries

    def test_repr_names_the_policy(self, make_policy: MakePolicy) -> None:
        policy = make_policy()
        assert type(policy).__name__ in repr(policy)
