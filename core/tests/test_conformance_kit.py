"""The conformance suites catch what they promise to: each test here runs one of their tests
against a component that breaks its contract, and expects it to fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cached_stores_factory import CachedStoreFactory, CachePolicy, EntryStat, MemoryStore, Store
from cached_stores_factory.caches.TTL_cache import TTLCache
from cached_stores_factory.testing.policies import PolicyConformance
from cached_stores_factory.testing.stores import StoreConformance


class PathStore(Store):
    """The store an author writes first over files: each key straight to a path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def put(self, key: str, data: bytes) -> None:
        (self.root / key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / key).write_bytes(data)

    def delete(self, key: str) -> bool:
        try:
            (self.root / key).unlink()
        except FileNotFoundError:
            return False
        return True

    def keys(self, prefix: str = "") -> Iterator[str]:
        found = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return (key for key in list(found) if key.startswith(prefix))


@pytest.mark.parametrize("order", ["file first", "folder first"])
def test_the_store_suite_fails_a_store_that_maps_keys_straight_to_paths(
    tmp_path: Path, order: str
) -> None:
    with pytest.raises(OSError):  # "a" can't be a file and a folder at once
        StoreConformance().test_a_key_may_also_be_the_prefix_of_another(PathStore(tmp_path), order)


class StoreOnHitPolicy(CachePolicy):
    """A policy that asks its store on every hit: the cost the hit-path test is there to catch."""

    def bind(self, store: Store) -> None:
        self.store = store

    def is_fresh(self, key: str, stat: EntryStat) -> bool:
        return key in self.store


class PlainStore(MemoryStore):
    """A local store that is not the suite's RecordingStore, as an overriding fixture gives."""


def hit_path_test(policy: CachePolicy, monkeypatch: pytest.MonkeyPatch) -> None:
    local = PlainStore()

    def build() -> object:
        return CachedStoreFactory(local, MemoryStore(), policy).build()

    PolicyConformance().test_the_hit_path_leaves_the_store_alone(build, local, monkeypatch)  # type: ignore[arg-type]


def test_the_hit_path_test_runs_over_any_local_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """It used to skip unless the `local_store` fixture was the suite's RecordingStore."""
    with pytest.raises(AssertionError, match=r"called the local store: \['__contains__'"):
        hit_path_test(StoreOnHitPolicy(), monkeypatch)


def test_the_hit_path_test_passes_a_policy_that_leaves_the_store_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hit_path_test(TTLCache(interval=60.0), monkeypatch)
