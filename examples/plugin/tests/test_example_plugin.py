"""The worked example of the plugin-author guide passes the conformance suites."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from csf_example_plugin import GzipJsonSerializer, SQLiteStore, TTLByPrefix
from hypothesis import strategies as st

from cached_stores_factory import CachedStoreFactory, EntryStat, MemoryStore, Serializer
from cached_stores_factory.cli import main
from cached_stores_factory.errors import ConfigError
from cached_stores_factory.testing.policies import PolicyConformance
from cached_stores_factory.testing.serializers import SerializerConformance
from cached_stores_factory.testing.stores import StoreConformance


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> SQLiteStore:
        return SQLiteStore(str(tmp_path / "entries.db"))


class TestTTLByPrefix(PolicyConformance):
    @pytest.fixture
    def make_policy(self) -> Callable[[], TTLByPrefix]:
        return lambda: TTLByPrefix(intervals={"a/": 5.0}, default=60.0)


class TestGzipJson(SerializerConformance):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return GzipJsonSerializer()

    @pytest.fixture
    def values(self) -> st.SearchStrategy[Any]:
        return st.dictionaries(st.text(), st.integers() | st.text())


def test_ttl_by_prefix_uses_the_longest_matching_prefix() -> None:
    now = 1_000.0
    policy = TTLByPrefix(intervals={"a/": 10.0, "a/b/": 100.0}, default=1.0)
    policy.clock = lambda: now
    aged_50 = EntryStat(size=1, modified=now - 50)
    assert policy.is_fresh("a/b/c", aged_50)
    assert not policy.is_fresh("a/c", aged_50)
    assert not policy.is_fresh("z", EntryStat(size=1, modified=now - 2))


def test_ttl_by_prefix_refetches_after_its_interval() -> None:
    remote = MemoryStore()
    remote.put("reports/q1", b"v1")
    policy = TTLByPrefix(intervals={"reports/": 30.0})
    now = [time.time()]
    policy.clock = lambda: now[0]
    store = CachedStoreFactory(MemoryStore(), remote, policy).build()
    assert store.get("reports/q1") == b"v1"
    remote.put("reports/q1", b"v2")
    assert store.get("reports/q1") == b"v1"
    now[0] += 31
    assert store.get("reports/q1") == b"v2"
    assert store.stats()["remote_reads"] == 2


def test_bad_intervals_are_config_errors_naming_the_prefix() -> None:
    with pytest.raises(ConfigError, match=r"\[policy\].*intervals\['x/'\] must be > 0"):
        CachedStoreFactory.from_config(
            {
                "local": {"store": "memory"},
                "remote": {"store": "memory"},
                "policy": {"name": "ttl-by-prefix", "intervals": {"x/": 0}},
            }
        )


def test_the_installed_plugin_is_found_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    factory = CachedStoreFactory.from_config(
        {
            "serializer": "json-gzip",
            "local": {"store": "sqlite", "path": str(tmp_path / "local.db")},
            "remote": {"store": "memory"},
            "policy": {"name": "ttl-by-prefix", "default": 5.0},
        }
    )
    store = factory.build()
    store["doc"] = {"n": 1}
    assert store["doc"] == {"n": 1}
    assert isinstance(factory.local_store, SQLiteStore)
    assert main(["plugins"]) == 0
    listing = capsys.readouterr().out
    for name in ("sqlite", "ttl-by-prefix", "json-gzip"):
        assert any(
            line.split()[1:3] == [name, "csf-example-plugin"] for line in listing.splitlines()
        )


def test_a_ttl_over_the_worked_example_store_expires_on_time(tmp_path: Path) -> None:
    """Its `stat` reports when each row was written, so an entry is never taken for younger."""
    from cached_stores_factory.caches.TTL_cache import TTLCache

    remote = MemoryStore()
    remote.put("k", b"v1")
    local = SQLiteStore(str(tmp_path / "entries.db"))
    cached = CachedStoreFactory(local, remote, TTLCache(interval=0.5)).build()
    assert cached.get("k") == b"v1"
    remote.put("k", b"v2")
    time.sleep(0.7)
    assert cached.get("k") == b"v2"  # expired: fetched again, not a hit
    assert cached.stats()["hits"] == 0 and cached.stats()["remote_reads"] == 2
    assert cached.purge() == 0  # purge and reads agree: the new copy is fresh
