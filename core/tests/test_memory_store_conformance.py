"""The built-in MemoryStore passes the store conformance suite."""

from collections.abc import Iterator

import pytest

from cached_stores_factory import MemoryStore, Store
from cached_stores_factory.testing.stores import FenceConformance, StoreConformance


class TestMemoryStoreConformance(StoreConformance, FenceConformance):
    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        with MemoryStore() as store:
            yield store

    def lose_fences(self, store: Store, key: str) -> None:
        assert isinstance(store, MemoryStore)
        store._fences.clear()
