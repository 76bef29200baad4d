"""The store conformance suite: what every Store must do, first- or third-party.

Subclass `StoreConformance` in a test module and provide one fixture, `store`, that yields
an empty store of your kind:

    from cached_stores_factory.testing.stores import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store(self, tmp_path):
            with MyStore(tmp_path) as store:
                yield store

`large_size` (a class attribute) is how many bytes the streaming test pushes through
`put_stream` and reads back through `open_read`.  The property test runs 20 hypothesis
examples against the same store, clearing it before each one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import threading
import time
import unicodedata
from collections.abc import Iterator
from typing import IO, Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .._store import EntryStat, Store
from ..errors import InvalidKeyError, KeyNotFoundError

__all__ = ["ChunkedStream", "DictStore", "StoreConformance", "keys_strategy"]

MiB = 1024 * 1024

# One path segment: any printable text without separators, never "." or "..".
_segment = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))

keys_strategy = st.lists(_segment, min_size=1, max_size=3).map("/".join)
"""Valid keys: one to three segments of unicode text."""

INVALID_KEYS: tuple[Any, ...] = (
    "",
    "/absolute",
    "a/../b",
    "..",
    "a//b",
    "./a",
    "a/",
    "back\\slash",
    "nul\x00byte",
    "x" * 1025,
    b"bytes",
    42,
)


class DictStore(Store):
    """A store as an author writes it first: the four required methods over a dict.

    A missing key raises a plain KeyError, and no stored time is reported: what the engine
    must tolerate from a minimal third-party store.
    """

    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}

    def get(self, key: str) -> bytes:
        return self.entries[key]

    def put(self, key: str, data: bytes) -> None:
        self.entries[key] = bytes(data)

    def delete(self, key: str) -> bool:
        return self.entries.pop(key, None) is not None

    def keys(self, prefix: str = "") -> Iterator[str]:
        return (key for key in list(self.entries) if key.startswith(prefix))


class ChunkedStream(io.RawIOBase):
    """A non-seekable stream of `size` pseudo-random bytes, made on demand in small pieces.

    It never holds more than one read's worth, so a store that streams keeps its memory flat.
    `digest` is the sha256 of everything it yields.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        super().__init__()
        self._left = size
        self._random = random.Random(seed)
        self._hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self._left, MiB)
        chunk = self._random.randbytes(count)
        buffer[:count] = chunk
        self._hash.update(chunk)
        self._left -= count
        return count

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()


def _drain(stream: IO[bytes], chunk: int = 64 * 1024) -> tuple[int, str]:
    """Read `stream` in pieces; return its size and sha256."""
    digest = hashlib.sha256()
    size = 0
    while piece := stream.read(chunk):
        digest.update(piece)
        size += len(piece)
    return size, digest.hexdigest()


_fixture_settings = settings(
    max_examples=20,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)


class StoreConformance:
    """Tests every Store must pass.  Subclasses provide the `store` fixture (an empty store)."""

    large_size: ClassVar[int] = 3 * MiB + 17

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Each subclass gets its own hypothesis test: one function run against several
        # store classes would share its example database and trip a health check.
        super().__init_subclass__(**kwargs)
        test = _fixture_settings(given(data=st.data())(_behaves_like_a_dict))
        test.__qualname__ = f"{cls.__qualname__}.test_behaves_like_a_dict"
        cls.test_behaves_like_a_dict = test  # type: ignore[attr-defined]

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        raise NotImplementedError("subclass StoreConformance and provide a `store` fixture")

    # -- basics -----------------------------------------------------------------------------

    def test_put_then_get_returns_the_bytes(self, store: Store) -> None:
        store.put("dir/file.bin", b"payload")
        assert store.get("dir/file.bin") == b"payload"
        assert "dir/file.bin" in store
        assert store.stat("dir/file.bin").size == 7

    def test_missing_key_raises_key_not_found(self, store: Store) -> None:
        for call in (store.get, store.open_read, store.stat):
            with pytest.raises(KeyNotFoundError) as caught:
                call("no/such/key")
            assert isinstance(caught.value, KeyError)
            assert "no/such/key" in str(caught.value)
        assert "no/such/key" not in store
        assert store.delete("no/such/key") is False

    @pytest.mark.parametrize("key", INVALID_KEYS, ids=repr)
    def test_invalid_keys_are_refused(self, store: Store, key: Any) -> None:
        with pytest.raises(InvalidKeyError):
            store.put(key, b"x")
        with pytest.raises(InvalidKeyError):
            store.put_stream(key, io.BytesIO(b"x"))
        for call in (store.get, store.open_read, store.stat, store.delete):
            with pytest.raises(InvalidKeyError):
                call(key)
        assert list(store.keys()) == []

    def test_overwrite_replaces_the_entry(self, store: Store) -> None:
        store.put("k", b"first version, longer")
        store.put("k", b"second")
        assert store.get("k") == b"second"
        assert store.stat("k").size == 6
        assert list(store.keys()) == ["k"]

    def test_empty_object(self, store: Store) -> None:
        store.put("empty", b"")
        assert store.get("empty") == b""
        assert "empty" in store
        assert store.stat("empty").size == 0
        assert list(store.keys()) == ["empty"]
        with store.open_read("empty") as entry:
            assert entry.read() == b""
            assert entry.stat.size == 0

    def test_delete_removes_only_that_entry(self, store: Store) -> None:
        store.put("a/1", b"one")
        store.put("a/2", b"two")
        assert store.delete("a/1") is True
        assert "a/1" not in store
        with pytest.raises(KeyNotFoundError):
            store.get("a/1")
        assert store.delete("a/1") is False
        assert store.get("a/2") == b"two"

    @pytest.mark.parametrize("order", ["file first", "folder first"])
    def test_a_key_may_also_be_the_prefix_of_another(self, store: Store, order: str) -> None:
        """ "a" and "a/b" are two entries: a store that maps keys straight to paths can't
        hold both (one would have to be a file and a directory at once)."""
        writes = [("a", b"the file"), ("a/b", b"under it"), ("a/b/c", b"deeper")]
        for key, data in writes if order == "file first" else writes[::-1]:
            store.put(key, data)
        for key, data in writes:
            assert store.get(key) == data
            assert store.stat(key).size == len(data)
        assert sorted(store.keys("a")) == ["a", "a/b", "a/b/c"]
        assert sorted(store.keys("a/")) == ["a/b", "a/b/c"]
        assert store.delete("a") is True
        assert sorted(store.keys()) == ["a/b", "a/b/c"]
        assert store.get("a/b") == b"under it"

    def test_keys_filter_by_prefix(self, store: Store) -> None:
        for key in ("a/1", "a/2", "ab", "b/1", "b/a/1"):
            store.put(key, key.encode())
        assert set(store.keys()) == {"a/1", "a/2", "ab", "b/1", "b/a/1"}
        assert set(store.keys("a/")) == {"a/1", "a/2"}
        assert set(store.keys("a")) == {"a/1", "a/2", "ab"}
        assert set(store.keys("b/a")) == {"b/a/1"}
        assert list(store.keys("zzz")) == []

    def test_binary_data_round_trips(self, store: Store) -> None:
        data = bytes(range(256)) * 4 + b"\r\n\x00\xff"
        store.put("bin", data)
        assert store.get("bin") == data
        with store.open_read("bin") as entry:
            assert entry.read() == data

    def test_unicode_keys_are_distinct_entries(self, store: Store) -> None:
        nfc = unicodedata.normalize("NFC", "café")
        nfd = unicodedata.normalize("NFD", "café")
        keys = [nfc, nfd, "Key", "key", "KEY", "ключ/数据", "emoji/🙂", "sp ace/+plus%25"]
        for index, key in enumerate(keys):
            store.put(key, str(index).encode())
        for index, key in enumerate(keys):
            assert store.get(key) == str(index).encode()
        assert set(store.keys()) == set(keys)

    def test_open_read_gives_stream_and_stat(self, store: Store) -> None:
        store.put("s", b"0123456789")
        with store.open_read("s") as entry:
            assert entry.read(4) == b"0123"
            assert entry.read() == b"456789"
            assert entry.stat.size == 10

    def test_stored_time_is_when_the_entry_was_written(self, store: Store) -> None:
        """Never the time of a later read: policies age entries by it (None: can't say)."""
        before = time.time()
        store.put("aged", b"v")
        written = time.time()
        time.sleep(0.5)
        with store.open_read("aged") as entry:
            stats = [entry.stat, store.stat("aged")]
        for stat in stats:
            if stat.modified is not None:  # coarse clocks round down, by a second at most
                assert before - 2 <= stat.modified <= written + 0.25, stat

    def test_put_stream_reports_what_it_stored(self, store: Store) -> None:
        stat = store.put_stream("p", io.BytesIO(b"streamed"), etag="origin-etag")
        assert isinstance(stat, EntryStat)
        assert stat.size == 8
        assert store.get("p") == b"streamed"

    def test_clear_removes_everything(self, store: Store) -> None:
        for key in ("x", "y/z", "w"):
            store.put(key, b"v")
        assert store.clear() == 3
        assert list(store.keys()) == []

    # -- large and concurrent ---------------------------------------------------------------

    def test_large_object_streams_both_ways(self, store: Store) -> None:
        source = ChunkedStream(self.large_size, seed=7)
        stat = store.put_stream("large/blob", source)  # type: ignore[arg-type]
        assert stat.size == self.large_size
        with store.open_read("large/blob") as entry:
            assert entry.stat.size == self.large_size
            assert _drain(entry.stream) == (self.large_size, source.digest)
        assert store.stat("large/blob").size == self.large_size

    def test_concurrent_writers_of_one_key_never_mix(self, store: Store) -> None:
        size = 256 * 1024
        payloads = [bytes([n]) * size for n in range(6)]
        seen: list[bytes] = []
        errors: list[BaseException] = []
        start = threading.Barrier(len(payloads) + 1)

        def write(payload: bytes) -> None:
            try:
                start.wait()
                for _ in range(3):
                    store.put_stream("contended", io.BytesIO(payload))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def read() -> None:
            try:
                start.wait()
                for _ in range(10):
                    with contextlib.suppress(KeyNotFoundError):
                        seen.append(store.get("contended"))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
        threads.append(threading.Thread(target=read))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        assert all(value in payloads for value in seen)
        assert store.get("contended") in payloads
        assert store.stat("contended").size == size
        store.put("contended", b"last")
        assert store.get("contended") == b"last"
        assert list(store.keys()) == ["contended"]


def _behaves_like_a_dict(self: StoreConformance, store: Store, data: st.DataObject) -> None:
    """Any set of keys and values reads back as a dict would, listings and deletes included."""
    store.clear()
    model = data.draw(st.dictionaries(keys_strategy, st.binary(max_size=64), max_size=6))
    for key, value in model.items():
        store.put(key, value)
    for key, value in model.items():
        assert store.get(key) == value
        assert store.stat(key).size == len(value)
    assert sorted(store.keys()) == sorted(model)
    if model:
        key = data.draw(st.sampled_from(sorted(model)))
        prefix = key[: data.draw(st.integers(0, len(key)))]
        assert sorted(store.keys(prefix)) == sorted(k for k in model if k.startswith(prefix))
        gone = data.draw(st.sets(st.sampled_from(sorted(model))))
        for key in gone:
            assert store.delete(key) is True
        assert sorted(store.keys()) == sorted(set(model) - gone)
