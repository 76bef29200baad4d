"""The three policies (TTL with and without bounds) pass the policy conformance suite, with
and without a state directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from policies_testlib import StatefulMemoryStore

from cached_stores_factory import CachePolicy, Store
from cached_stores_factory.testing.policies import ManualClock, PolicyConformance
from cached_stores_factory_policies import FIFOCache, LRUCache, TTLCache


class TestTTL(PolicyConformance):
    @pytest.fixture
    def make_policy(self) -> Callable[[], CachePolicy]:
        return lambda: TTLCache(interval=60.0)


class TestBoundedTTL(PolicyConformance):
    max_entries = 5

    @pytest.fixture
    def make_policy(self) -> Callable[[], CachePolicy]:
        return lambda: TTLCache(interval=60.0, max_entries=5, max_bytes=400)


class TestBoundedTTLWithState(TestBoundedTTL):
    @pytest.fixture
    def local_store(self, clock: ManualClock, tmp_path: Path) -> Store:
        return StatefulMemoryStore(tmp_path / "state", clock=clock)


class TestFIFO(PolicyConformance):
    max_entries = 5

    @pytest.fixture
    def make_policy(self) -> Callable[[], CachePolicy]:
        return lambda: FIFOCache(5, max_bytes=400)


class TestLRU(PolicyConformance):
    max_entries = 5

    @pytest.fixture
    def make_policy(self) -> Callable[[], CachePolicy]:
        return lambda: LRUCache(5, ttl=3600.0)


class TestFIFOWithState(TestFIFO):
    """The SQLite ledger: the same promises when the store has a state directory."""

    @pytest.fixture
    def local_store(self, clock: ManualClock, tmp_path: Path) -> Store:
        return StatefulMemoryStore(tmp_path / "state", clock=clock)


class TestLRUWithState(TestLRU):
    @pytest.fixture
    def local_store(self, clock: ManualClock, tmp_path: Path) -> Store:
        return StatefulMemoryStore(tmp_path / "state", clock=clock)
