"""The base classes: a store with only the four required methods gets every capability."""

from __future__ import annotations

import io
import pickle
import threading
from collections.abc import Iterator

import pytest

from cached_stores_factory import (
    CachedStoreFactory,
    CachePolicy,
    EntryReader,
    EntryStat,
    MemoryStore,
    Serializer,
    Store,
)
from cached_stores_factory.errors import (
    ConfigError,
    CSFError,
    InvalidKeyError,
    KeyNotFoundError,
    PluginNotFoundError,
    StoreError,
    redact,
)


class DictStore(Store):
    """The smallest possible store: the four required methods over a dict."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.calls: list[str] = []

    def get(self, key: str) -> bytes:
        self.calls.append(f"get {key}")
        try:
            return self.data[key]
        except KeyError:
            raise KeyNotFoundError(key) from None

    def put(self, key: str, data: bytes) -> None:
        self.data[key] = bytes(data)

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    def keys(self, prefix: str = "") -> Iterator[str]:
        return (k for k in list(self.data) if k.startswith(prefix))


def test_the_defaults_are_built_from_the_required_methods() -> None:
    store = DictStore()
    stat = store.put_stream("a/b", io.BytesIO(b"hello"), etag='"e1"')
    assert (stat.size, stat.etag) == (5, '"e1"')
    with store.open_read("a/b") as entry:
        assert entry.read() == b"hello"
        assert entry.stat.size == 5
    assert store.stat("a/b").size == 5
    assert "a/b" in store
    assert "a/c" not in store
    store.put("a/c", b"")
    assert sorted(store.keys("a/")) == ["a/b", "a/c"]
    assert store.clear() == 2
    assert list(store.keys()) == []
    assert store.state_dir() is None
    assert store.native_expiry is None


def test_a_minimal_store_works_as_both_tiers_of_a_cached_store() -> None:
    remote = DictStore()
    remote.put("k", b"v")
    cached = CachedStoreFactory(DictStore(), remote).build()
    assert cached.get("k") == b"v"
    assert cached.get("k") == b"v"
    assert remote.calls == ["get k"]


def test_a_store_missing_a_required_method_cannot_be_created() -> None:
    class NoKeys(Store):
        def get(self, key: str) -> bytes:
            return b""

        def put(self, key: str, data: bytes) -> None: ...

        def delete(self, key: str) -> bool:
            return False

    with pytest.raises(TypeError, match="keys"):
        NoKeys()  # type: ignore[abstract]


def test_the_base_policy_is_no_policy() -> None:
    policy = CachePolicy()
    stat = EntryStat(size=3, modified=0.0)
    policy.bind(MemoryStore())
    assert policy.admits(10**12)
    assert policy.is_fresh("k", stat)
    assert list(policy.on_insert("k", stat)) == []
    assert list(policy.expired()) == []


def test_serializer_requires_both_methods() -> None:
    class HalfSerializer(Serializer):
        def dumps(self, value: object) -> bytes:
            return b""

    with pytest.raises(TypeError, match="loads"):
        HalfSerializer()  # type: ignore[abstract]


def test_error_hierarchy_fits_standard_handlers() -> None:
    missing = KeyNotFoundError("a/b", "memory store")
    assert isinstance(missing, KeyError)
    assert isinstance(missing, CSFError)
    assert str(missing) == "no entry for key 'a/b' in memory store"
    assert issubclass(InvalidKeyError, ValueError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(PluginNotFoundError, ConfigError)
    assert issubclass(StoreError, CSFError)
    assert redact("auth failed for s3cr3t at host", ["s3cr3t", None, ""]) == (
        "auth failed for *** at host"
    )


def test_memory_store_is_thread_safe_and_never_mixes_values() -> None:
    store = MemoryStore()
    values = [bytes([i]) * 1000 for i in range(8)]
    errors: list[BaseException] = []

    def writer(value: bytes) -> None:
        try:
            for n in range(300):
                store.put(f"k{n % 5}", value)
                got = store.get(f"k{n % 5}")
                assert got in values
                list(store.keys())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(v,)) for v in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(store.keys()) == [f"k{i}" for i in range(5)]
    assert all(store.get(k) in values for k in store)
    assert len(store) == 5


def test_memory_store_stamps_its_clock_and_digest() -> None:
    store = MemoryStore(clock=lambda: 42.0)
    store.put("k", b"abc")
    stat = store.stat("k")
    assert stat.modified == 42.0
    assert stat.digest == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert repr(store) == "MemoryStore(<1 entries>)"


def test_entry_stat_is_a_frozen_checked_value_that_pickles() -> None:
    """What plugins and users rely on: a named tuple, as os.stat_result is."""
    stat = EntryStat(3, 1.0, etag="e")
    assert stat == EntryStat(size=3, modified=1.0, etag="e", digest=None)
    assert hash(stat) == hash(EntryStat(3, 1.0, "e"))
    assert type(restored := pickle.loads(pickle.dumps(stat))) is EntryStat and restored == stat
    assert stat._replace(modified=2.0) == EntryStat(3, 2.0, "e")
    assert repr(stat) == "EntryStat(size=3, modified=1.0, etag='e', digest=None)"
    with pytest.raises(AttributeError):
        stat.size = 4  # type: ignore[misc]
    with pytest.raises(ValueError, match="'size' must be >= 0: -1"):
        EntryStat(-1, None)
    reader = EntryReader(io.BytesIO(b"abc"), stat)
    assert reader.stat is stat and reader.read() == b"abc"
    with EntryReader(io.BytesIO(b"x"), stat) as entry:
        stream = entry.stream
    assert stream.closed
