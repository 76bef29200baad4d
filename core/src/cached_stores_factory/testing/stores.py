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
`put_stream` and reads back through `open_read`.  The property tests run 20 hypothesis
examples each against the same store: one clears it before each example, the other checks
that `open_read`'s stream seeks, reads and tells as a file would (`assert_reads_like_a_file`),
for entries from empty to `large_size`.

A store whose `fences_shared` is True also subclasses `FenceConformance`, with the same
`store` fixture, a `lose_fences` method that forgets what the store knows of a key's fence
(as a restart or a wiped directory would) and, for a store that other processes can open,
`opener`: a picklable callable that opens the same store there.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import random
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from typing import IO, Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .._store import EntryStat, Store
from ..errors import InvalidKeyError, KeyNotFoundError, StoreError
from .processes import StoreProcess

__all__ = [
    "ChunkedStream",
    "DictStore",
    "FenceConformance",
    "StoreConformance",
    "assert_reads_like_a_file",
    "keys_strategy",
    "take_lease",
]

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


def assert_reads_like_a_file(stream: IO[bytes], content: bytes, data: st.DataObject) -> None:
    """Drive `stream` (opened on `content`) with drawn seeks, reads and tells, as a file.

    The model is an io.BytesIO of the same bytes, with a regular file's one difference: a
    seek to a negative position raises OSError(EINVAL) and moves nothing (BytesIO raises
    ValueError for some and clamps others to 0).  Seeking past the end is allowed, tell()
    reports it, and reads there return b"".  An unknown `whence` raises ValueError.
    """
    size = len(content)
    model = io.BytesIO(content)
    offsets = st.integers(-3, 3) | st.integers(-size - 8, 2 * size + 8)
    lengths = st.integers(-1, 3) | st.integers(0, min(size + 8, 96 * 1024))
    whences = st.sampled_from([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
    operations = st.one_of(  # (name, argument, whence)
        st.tuples(st.just("seek"), offsets, whences),
        st.tuples(st.just("read"), lengths, st.just(0)),
        st.tuples(st.just("readinto"), lengths.map(lambda n: max(n, 0)), st.just(0)),
        st.tuples(st.just("tell"), st.just(0), st.just(0)),
    )
    assert stream.seekable()
    with pytest.raises(ValueError, match="whence"):
        stream.seek(0, 3)
    assert stream.tell() == 0
    for name, argument, whence in data.draw(st.lists(operations, max_size=12), label="ops"):
        if name == "seek":
            base = {io.SEEK_SET: 0, io.SEEK_CUR: model.tell(), io.SEEK_END: size}[whence]
            if base + argument < 0:
                with pytest.raises(OSError) as refused:
                    stream.seek(argument, whence)
                assert refused.value.errno == errno.EINVAL
            else:
                assert stream.seek(argument, whence) == model.seek(base + argument)
        elif name == "read":
            assert stream.read(argument) == model.read(argument)
        elif name == "readinto":
            got, expected = bytearray(argument), bytearray(argument)
            assert stream.readinto(got) == model.readinto(expected)  # type: ignore[attr-defined]
            assert got == expected
        assert stream.tell() == model.tell()


_fixture_settings = settings(
    max_examples=20,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)


def take_lease(store: Store, key: str, *, guard: float = 20.0) -> str:
    """What asking `store` for `key`'s lease gives: "held", or the StoreError's message.

    It is asked from a daemon thread, joined for `guard` seconds: a lease still waited for
    then fails the calling test (it blocks for good) instead of hanging it.
    """
    outcome: list[str] = []

    def take() -> None:
        lease = store.lease(key)
        assert lease is not None, f"{store!r} offers no lease"
        try:
            with lease:
                outcome.append("held")
        except StoreError as exc:
            outcome.append(str(exc))

    taker = threading.Thread(target=take, daemon=True)
    taker.start()
    taker.join(guard)
    assert outcome, f"still waiting for the lease on {key!r} after {guard} s"
    return outcome[0]


class StoreConformance:
    """Tests every Store must pass.  Subclasses provide the `store` fixture (an empty store)."""

    large_size: ClassVar[int] = 3 * MiB + 17

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Each subclass gets its own hypothesis test: one function run against several
        # store classes would share its example database and trip a health check.
        super().__init_subclass__(**kwargs)
        for property_test in (_behaves_like_a_dict, _streams_read_like_files):
            name = f"test{property_test.__name__}"
            test = _fixture_settings(given(data=st.data())(property_test))
            test.__name__ = name
            test.__qualname__ = f"{cls.__qualname__}.{name}"
            setattr(cls, name, test)

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


def _streams_read_like_files(self: StoreConformance, store: Store, data: st.DataObject) -> None:
    """`open_read`'s stream seeks, reads and tells as a file would, small entries and large."""
    size = data.draw(st.sampled_from([0, 17, 70 * 1024, self.large_size]), label="size")
    key = f"stream/{size}"
    content = random.Random(size).randbytes(size)
    if key not in store:  # the store lives across examples: each size is written once
        store.put(key, content)
    with store.open_read(key) as entry:
        assert_reads_like_a_file(entry.stream, content, data)


def _fenced_put(store: Store, key: str, data: bytes, token: str | None) -> EntryStat | None:
    assert token is not None, f"no fence for {key!r}"
    return store.put_fenced(key, io.BytesIO(data), etag=f"etag-{len(data)}", fence=token)


class FenceConformance:
    """The fence contract, for a store whose fences hold across processes (`fences_shared`).

    Subclasses provide the `store` fixture (an empty store), `lose_fences` and, if other
    processes can open the store, `opener`.
    """

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        raise NotImplementedError("subclass FenceConformance and provide a `store` fixture")

    def opener(self, store: Store) -> Callable[[], Store] | None:
        """A picklable callable that opens `store` in another process; None if none can."""
        return None

    @pytest.fixture
    def fenced(self, store: Store) -> Store:
        if not type(store).fences_shared:
            pytest.skip(f"{type(store).__name__} does not share its fences")
        return store

    def lose_fences(self, store: Store, key: str) -> None:
        """Forget the store's fence state for `key` (a restart, a wiped directory)."""
        raise NotImplementedError("subclass FenceConformance and provide `lose_fences`")

    def test_the_fence_holds_still_and_admits_its_fetch(self, fenced: Store) -> None:
        token = fenced.fence("k")
        assert isinstance(token, str)
        assert token
        assert fenced.fence("k") == token
        stat = _fenced_put(fenced, "k", b"fetched", token)
        assert stat is not None
        assert (stat.size, stat.etag) == (7, "etag-7")
        assert fenced.get("k") == b"fetched"
        assert fenced.stat("k").etag == "etag-7"
        assert fenced.fence("k") == token  # a fenced store is no change

    def test_a_change_moves_the_fence_and_refuses_the_fetch_it_overlapped(
        self, fenced: Store
    ) -> None:
        fenced.put("k", b"old copy")
        before = fenced.fence("k")
        removed, mark = fenced.begin_change("k", hold=600)
        assert removed is True
        assert "k" not in fenced
        assert fenced.fence("k") is None  # changing: a fetch beginning now stores nothing
        assert _fenced_put(fenced, "k", b"older", before) is None
        assert "k" not in fenced
        after = fenced.end_change("k", mark)
        assert after not in (None, "", before)
        assert fenced.fence("k") == after
        assert _fenced_put(fenced, "k", b"older", before) is None
        assert "k" not in fenced
        assert _fenced_put(fenced, "k", b"written", after) is not None
        assert fenced.get("k") == b"written"
        assert _fenced_put(fenced, "k", b"older", before) is None
        assert fenced.get("k") == b"written"
        assert fenced.begin_change("k", hold=600)[0] is True
        assert fenced.begin_change("k", hold=600)[0] is False  # no copy left to drop

    def test_an_invalidation_drops_the_copy_and_moves_the_fence(self, fenced: Store) -> None:
        before = fenced.fence("k")
        assert _fenced_put(fenced, "k", b"cached", before) is not None
        _removed, mark = fenced.begin_change("k", hold=600)
        after = fenced.end_change("k", mark)
        assert after not in (None, before)
        assert "k" not in fenced
        assert _fenced_put(fenced, "k", b"cached", before) is None
        assert "k" not in fenced
        assert fenced.fence("k") == after

    def test_overlapping_changes_store_no_copy(self, fenced: Store) -> None:
        """Which of two overlapping writes the remote kept is unknown: neither stores."""
        _removed, first = fenced.begin_change("k", hold=600)
        _removed, second = fenced.begin_change("k", hold=600)
        assert fenced.end_change("k", first) is None
        assert fenced.fence("k") is None  # the second still runs
        assert fenced.end_change("k", second) is None
        token = fenced.fence("k")
        assert token is not None  # clean again, for fetches
        assert _fenced_put(fenced, "k", b"fetched", token) is not None

    def test_an_end_after_its_mark_lapsed_or_was_lost_stores_no_copy(self, fenced: Store) -> None:
        _removed, lost = fenced.begin_change("k", hold=600)
        self.lose_fences(fenced, "k")
        assert fenced.end_change("k", lost) is None
        _removed, stale = fenced.begin_change("k", hold=0.2)
        deadline = time.monotonic() + 30
        while fenced.fence("k") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        _removed, current = fenced.begin_change("k", hold=600)  # another changer, later
        assert fenced.end_change("k", stale) is None
        assert fenced.end_change("k", current) is None  # the lapsed one overlapped it

    def test_a_change_marks_only_its_own_key(self, fenced: Store) -> None:
        fenced.begin_change("changing", hold=600)
        assert fenced.fence("changing") is None
        other = fenced.fence("other")
        assert other is not None
        assert _fenced_put(fenced, "other", b"v", other) is not None
        assert fenced.get("other") == b"v"

    def test_a_change_mark_lapses_after_its_hold(self, fenced: Store) -> None:
        """A changer that died never blocks its key for longer than `hold`."""
        before = fenced.fence("k")
        fenced.begin_change("k", hold=0.2)
        deadline = time.monotonic() + 30
        while (token := fenced.fence("k")) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert token is not None, "the change mark never lapsed"
        assert token != before
        assert _fenced_put(fenced, "k", b"after", before) is None
        assert _fenced_put(fenced, "k", b"after", token) is not None
        assert fenced.get("k") == b"after"

    def test_lost_fence_state_refuses_every_earlier_token(self, fenced: Store) -> None:
        before = fenced.fence("k")
        self.lose_fences(fenced, "k")
        assert _fenced_put(fenced, "k", b"older", before) is None
        assert "k" not in fenced
        after = fenced.fence("k")
        assert after not in (None, before)
        assert _fenced_put(fenced, "k", b"new", after) is not None
        assert fenced.get("k") == b"new"

    def test_a_fetch_paused_in_one_process_loses_to_a_change_in_another(
        self, fenced: Store
    ) -> None:
        opener = self.opener(fenced)
        if opener is None:
            pytest.skip(f"{type(fenced).__name__} lives in one process")
        fenced.put("k", b"v0")
        with StoreProcess(opener) as fetcher, StoreProcess(opener) as writer:
            token = fetcher.call("fence", "k")
            removed, mark = writer.call("begin_change", "k", 600)
            assert removed is True
            assert fetcher.call("fence", "k") is None
            written = writer.call("end_change", "k", mark)
            assert writer.call("put_fenced", "k", b"v2", written) is not None
            assert fetcher.call("put_fenced", "k", b"v1", token) is None
            assert fetcher.call("read", "k") == b"v2"
        assert fenced.get("k") == b"v2"

    def test_moving_every_fence_refuses_every_token_handed_out_before(self, fenced: Store) -> None:
        """What `clear` relies on: keys with a copy or none, a writer's own token, and a
        change running (it may have overlapped the change outside the cache that a clear
        follows)."""
        fenced.put("cached", b"copy")
        tokens = {key: fenced.fence(key) for key in ("cached", "cold", "a/b")}
        _removed, mark = fenced.begin_change("written", hold=600)
        tokens["written"] = fenced.end_change("written", mark)
        _removed, running = fenced.begin_change("changing", hold=600)
        fenced.move_fences()
        for key, token in tokens.items():
            assert _fenced_put(fenced, key, b"older", token) is None, key
        assert sorted(fenced.keys()) == ["cached"]  # fences move; copies stay
        assert fenced.get("cached") == b"copy"
        assert fenced.fence("changing") is None  # a change running stays marked,
        assert fenced.end_change("changing", running) is None  # and stores no copy
        for key, token in {**tokens, "changing": None}.items():
            after = fenced.fence(key)
            assert after not in (None, token)
            assert _fenced_put(fenced, key, b"new", after) is not None
            assert fenced.get(key) == b"new"

    def test_fences_moved_in_one_process_refuse_a_fetch_paused_in_another(
        self, fenced: Store
    ) -> None:
        opener = self.opener(fenced)
        if opener is None:
            pytest.skip(f"{type(fenced).__name__} lives in one process")
        with StoreProcess(opener) as fetcher, StoreProcess(opener) as clearer:
            token = fetcher.call("fence", "cold")
            clearer.call("move_fences")
            assert fetcher.call("put_fenced", "cold", b"older", token) is None
            assert fetcher.call("read", "cold") is None
            after = fetcher.call("fence", "cold")
            assert fetcher.call("put_fenced", "cold", b"new", after) is not None
        assert fenced.get("cold") == b"new"

    def test_fences_are_never_listed_as_entries(self, fenced: Store) -> None:
        for key in ("a", "b/c"):
            fenced.fence(key)
        fenced.begin_change("d", hold=600)
        fenced.end_change("e", fenced.begin_change("e", hold=600)[1])
        assert list(fenced.keys()) == []
        assert fenced.clear() == 0

    def test_fetches_racing_changes_never_store_an_older_version(self, fenced: Store) -> None:
        """Threads: a writer changes the key while fetchers store what they read meanwhile.

        The "remote" is a variable the writer sets between `begin_change` and `end_change`,
        as a real writer does; once all stop, the copy is the last version or none.
        """
        remote = [b"0"]
        stop = threading.Event()
        errors: list[BaseException] = []

        def fetch() -> None:
            try:
                while not stop.is_set():
                    token = fenced.fence("k")
                    data = remote[0]
                    if token is not None:
                        _fenced_put(fenced, "k", data, token)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        fetchers = [threading.Thread(target=fetch) for _ in range(3)]
        for thread in fetchers:
            thread.start()
        try:
            for version in range(1, 40):
                _removed, mark = fenced.begin_change("k", hold=600)
                remote[0] = str(version).encode()
                token = fenced.end_change("k", mark)
                if token is not None:
                    _fenced_put(fenced, "k", remote[0], token)
                with contextlib.suppress(KeyNotFoundError):
                    assert int(fenced.get("k")) >= version
        finally:
            stop.set()
            for thread in fetchers:
                thread.join(timeout=60)
        assert errors == []
        with contextlib.suppress(KeyNotFoundError):
            assert fenced.get("k") == remote[0]
