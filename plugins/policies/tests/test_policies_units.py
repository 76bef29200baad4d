"""Construction, validation, registration and the seed's import paths."""

from __future__ import annotations

import json
import math

import pytest

from cached_stores_factory import CachedStoreFactory, MemoryStore, cli
from cached_stores_factory.errors import ConfigError
from cached_stores_factory_policies import FIFOCache, LRUCache, TTLCache


def test_csf_plugins_lists_the_three_policies(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    ours = {
        row["name"]: row for row in rows if row["distribution"] == "cached-stores-factory-policies"
    }
    assert sorted(ours) == ["fifo", "lru", "ttl"]
    assert {row["kind"] for row in ours.values()} == {"policy"}
    assert all(row["error"] is None for row in ours.values())


def test_the_seed_import_paths_reexport_the_classes() -> None:
    from cached_stores_factory.caches.FIFO_cache import FIFOCache as Fifo
    from cached_stores_factory.caches.LRU_cache import LRUCache as Lru
    from cached_stores_factory.caches.TTL_cache import FIFOCache as FifoFromTtl
    from cached_stores_factory.caches.TTL_cache import TTLCache as Ttl

    assert (Ttl, Fifo, FifoFromTtl, Lru) == (TTLCache, FIFOCache, FIFOCache, LRUCache)


def test_config_names_build_the_same_policies() -> None:
    factory = CachedStoreFactory.from_config(
        {
            "local": {"store": "memory"},
            "remote": {"store": "memory"},
            "policy": {"name": "lru", "depth": 3, "max_bytes": 100, "ttl": 60.0},
        }
    )
    policy = factory.cache_policy
    assert isinstance(policy, LRUCache)
    assert (policy.depth, policy.max_bytes, policy.ttl) == (3, 100, 60.0)
    assert repr(policy) == (
        "LRUCache(depth=3, max_bytes=100, ttl=60.0, stale_if_error=0.0, stale_while_revalidate=0.0)"
    )
    assert repr(TTLCache(interval=60)) == (
        "TTLCache(interval=60, stale_if_error=0.0, stale_while_revalidate=0.0, max_bytes=None, "
        "max_entries=None)"
    )


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: TTLCache(0), ValueError, "interval must be > 0 seconds, got 0"),
        (lambda: TTLCache(-1.5), ValueError, "interval must be > 0"),
        (lambda: TTLCache(math.nan), ValueError, "interval must be > 0"),
        (lambda: TTLCache("60"), TypeError, "interval must be a number of seconds, not str"),
        (lambda: TTLCache(True), TypeError, "not bool"),
        (lambda: FIFOCache(0), ValueError, "depth must be >= 1, got 0"),
        (lambda: FIFOCache(2.5), TypeError, "depth must be an int, not float"),
        (lambda: LRUCache(True), TypeError, "depth must be an int, not bool"),
        (lambda: LRUCache(3, max_bytes=0), ValueError, "max_bytes must be >= 1"),
        (lambda: LRUCache(3, ttl=0), ValueError, "ttl must be > 0"),
        (lambda: FIFOCache(3, ttl="soon"), TypeError, "ttl must be a number of seconds"),
    ],
)
def test_bad_arguments_are_refused(make: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        make()  # type: ignore[operator]


def test_bad_config_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="depth must be >= 1"):
        CachedStoreFactory.from_config(
            {
                "local": {"store": "memory"},
                "remote": {"store": "memory"},
                "policy": {"name": "fifo", "depth": 0},
            }
        )


def test_infinite_ages_mean_never_stale() -> None:
    store = MemoryStore(clock=lambda: 0.0)
    store.put("k", b"v")
    policy = TTLCache(math.inf, clock=lambda: 1e18)
    assert policy.is_fresh("k", store.stat("k"))


def test_admits_follows_max_bytes() -> None:
    policy = FIFOCache(2, max_bytes=10)
    assert policy.admits(10)
    assert not policy.admits(11)
    assert policy.admits(None)  # unknown sizes are checked again at insert
    assert FIFOCache(2).admits(10**12)


def test_a_policy_serves_one_local_store() -> None:
    policy = LRUCache(2)
    first = MemoryStore()
    CachedStoreFactory(first, MemoryStore(), policy).build()
    CachedStoreFactory(first, MemoryStore(), policy).build()  # the same store: fine
    with pytest.raises(ValueError, match="already bound"):
        CachedStoreFactory(MemoryStore(), MemoryStore(), policy).build()


def test_an_unbound_policy_says_so() -> None:
    with pytest.raises(RuntimeError, match="not bound to a store"):
        FIFOCache(2).on_delete("k")
