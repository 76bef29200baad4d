"""The built-in MemoryStore passes the store conformance suite."""

from collections.abc import Iterator

import pytest

from cached_stores_factory import MemoryStore
from cached_stores_factory.testing.stores import StoreConformance


class TestMemoryStoreConformance(StoreConformance):
    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        with MemoryStore() as store:
            yield store
