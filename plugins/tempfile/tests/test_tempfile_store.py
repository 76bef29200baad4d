"""TempfileStore: the conformance suite, plus what only a directory of files can get wrong."""

from __future__ import annotations

import errno
import functools
import io
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from cached_stores_factory import CachedStoreFactory, MemoryStore, Store
from cached_stores_factory.errors import (
    ConfigError,
    CorruptEntryError,
    InvalidKeyError,
    KeyNotFoundError,
    StoreError,
)
from cached_stores_factory.plugins import registry
from cached_stores_factory.testing.faults import tmpfs
from cached_stores_factory.testing.stores import (
    ChunkedStream,
    FenceConformance,
    StoreConformance,
)
from cached_stores_factory_tempfile import TempfileStore
from cached_stores_factory_tempfile._store import _entry_name


class TestTempfileStoreConformance(StoreConformance, FenceConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[TempfileStore]:
        with TempfileStore("conformance", root=tmp_path / "store") as store:
            yield store

    def lose_fences(self, store: Store, key: str) -> None:
        assert isinstance(store, TempfileStore)
        (store.root / "fences" / "stripes").unlink()

    def opener(self, store: Store) -> Callable[[], Store]:
        assert isinstance(store, TempfileStore)
        return functools.partial(TempfileStore, "conformance", root=store.root)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TempfileStore]:
    with TempfileStore("t", root=tmp_path / "store") as store:
        yield store


def objects(store: TempfileStore) -> Path:
    return store.root / "objects"


def test_directory_under_tmpdir_with_mode_0700(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    with TempfileStore("my_local_store") as store:
        assert store.root == tmp_path / "my_local_store"
        for path in (store.root, objects(store), store.state_dir()):
            assert stat.S_IMODE(path.stat().st_mode) == 0o700
        store.put("a", b"x")
        assert stat.S_IMODE((objects(store) / _entry_name("a")).stat().st_mode) == 0o600


def test_registered_under_tempfile_by_its_distribution():
    component = registry.get("store", "tempfile")
    assert component.factory is TempfileStore
    assert component.distribution == "cached-stores-factory-tempfile"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../escape"])
def test_name_must_be_one_directory_name(name: str):
    with pytest.raises(ConfigError, match="one directory name"):
        TempfileStore(name)


def test_refuses_a_symlinked_root(tmp_path: Path):
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StoreError, match="symlink"):
        TempfileStore("x", root=tmp_path / "link")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_root_that_cannot_be_made_names_the_reason_and_no_wrong_hint(tmp_path: Path):
    root = tmp_path / ("x" * 300)
    with pytest.raises(StoreError, match=r"File name too long$") as info:
        TempfileStore("x", root=root)
    assert str(root) in str(info.value)


def test_refuses_a_root_others_can_write(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StoreError, match="writable by group or others"):
        TempfileStore("x", root=shared)


def test_refuses_a_symlinked_objects_directory(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    (tmp_path / "target").mkdir(mode=0o700)
    (root / "objects").symlink_to(tmp_path / "target")
    with pytest.raises(StoreError, match="objects"):
        TempfileStore("x", root=root)


def test_planted_symlink_is_never_followed(store: TempfileStore, tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the root")
    (objects(store) / _entry_name("victim")).symlink_to(secret)
    with pytest.raises(KeyNotFoundError):
        store.get("victim")
    with pytest.raises(KeyNotFoundError):
        store.stat("victim")
    assert "victim" not in store
    # Writing the key replaces the link itself; the file it pointed at is untouched.
    store.put("victim", b"fresh")
    assert store.get("victim") == b"fresh"
    assert secret.read_bytes() == b"outside the root"
    assert not (objects(store) / _entry_name("victim")).is_symlink()


def test_planted_fifo_and_directory_are_not_entries(store: TempfileStore):
    os.mkfifo(objects(store) / _entry_name("fifo"))
    (objects(store) / _entry_name("dir")).mkdir()
    for key in ("fifo", "dir"):
        with pytest.raises(KeyNotFoundError):
            store.open_read(key)
        assert key not in store


def test_planted_sidecar_cannot_claim_another_key(store: TempfileStore):
    store.put("real", b"data")
    forged = {"key": "forged", "size": 4, "digest": None, "etag": None, "inode": 0}
    (objects(store) / (_entry_name("real") + ".meta")).write_text(json.dumps(forged))
    assert list(store.keys()) == []
    assert store.get("real") == b"data"


@pytest.mark.parametrize(
    "key", ["../../etc/passwd-like", "a/../../b", "..", "/etc/hosts", "a\\..\\b"]
)
def test_traversal_keys_are_refused_and_nothing_leaves_the_root(
    store: TempfileStore, tmp_path: Path, key: str
):
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValueError):
        store.put(key, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_case_and_normalisation_variants_get_separate_files(store: TempfileStore):
    keys = ["Report.txt", "report.txt", "caf\u00e9", "cafe\u0301"]
    for key in keys:
        store.put(key, key.encode())
    assert len({p.name for p in objects(store).iterdir() if not p.name.endswith(".meta")}) == 4
    assert [store.get(key) for key in keys] == [key.encode() for key in keys]


def test_metadata_survives_a_new_instance(tmp_path: Path):
    root = tmp_path / "store"
    with TempfileStore("t", root=root) as first:
        written = first.put_stream("dir/obj", io.BytesIO(b"hello"), etag='"abc123"')
    with TempfileStore("t", root=root) as second:
        assert list(second.keys()) == ["dir/obj"]
        assert second.stat("dir/obj") == written
        assert written.etag == '"abc123"'
        assert written.digest == "xxh3-64:" + xxhash.xxh3_64_hexdigest(b"hello")
        assert second.get("dir/obj") == b"hello"


def test_stale_sidecar_is_ignored(store: TempfileStore):
    store.put_stream("k", io.BytesIO(b"old"), etag="old-etag")
    meta_path = objects(store) / (_entry_name("k") + ".meta")
    stale = meta_path.read_text()
    store.put_stream("k", io.BytesIO(b"new"), etag="new-etag")
    meta_path.write_text(stale)  # as if a crash between the sidecar's and the data's rename
    found = store.stat("k")
    assert (found.size, found.etag, found.digest) == (3, None, None)
    assert store.get("k") == b"new"


def test_state_dir_is_private_and_never_listed(store: TempfileStore):
    state = store.state_dir()
    assert state == store.root / "state"
    (state / "policy.json").write_text("{}")
    store.put("k", b"v")
    assert list(store.keys()) == ["k"]


def test_large_entry_opens_as_a_real_file(store: TempfileStore):
    data = bytes(range(256)) * 12 * 1024  # 3 MiB: above the read-whole threshold
    store.put("f", data)
    with store.open_read("f") as entry:
        assert isinstance(entry.stream, io.BufferedReader)
        with pytest.raises(io.UnsupportedOperation):  # the file ends in the trailer
            entry.stream.fileno()
        entry.stream.seek(1000)
        assert entry.read() == data[1000:]
        assert entry.stat.modified == os.stat(objects(store) / _entry_name("f")).st_mtime


def test_small_entry_is_a_snapshot_taken_at_open(store: TempfileStore):
    store.put("f", b"first")
    with store.open_read("f") as entry:
        store.put("f", b"second, replacing it")
        assert entry.stat.size == 5
        assert entry.read() == b"first"
    assert store.get("f") == b"second, replacing it"


def test_large_entry_keeps_its_version_while_being_replaced(store: TempfileStore):
    old, new = b"o" * 3_000_000, b"n" * 3_100_000
    store.put("f", old)
    with store.open_read("f") as entry:
        head = entry.read(1000)
        store.put("f", new)
        assert head + entry.read() == old
    assert store.get("f") == new


def test_put_stream_uses_constant_memory(store: TempfileStore):
    size = 32 * 1024 * 1024
    source = ChunkedStream(size, seed=3)
    tracemalloc.start()
    try:
        store.put_stream("big", source)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * 1024 * 1024
    assert store.stat("big").size == size


CRASHING_WRITER = textwrap.dedent(
    """
    import os, sys
    from cached_stores_factory_tempfile import TempfileStore

    class Dying:
        sent = 0
        def read(self, size=-1):
            if self.sent:
                os._exit(17)  # the process dies mid-write, with no cleanup at all
            self.sent = 1
            return b"N" * 1000

    TempfileStore("t", root=sys.argv[1]).put_stream("k", Dying())
    """
)


@pytest.mark.parametrize("had_old", [True, False])
def test_a_crash_mid_write_leaves_the_old_entry_or_none(tmp_path: Path, had_old: bool):
    root = tmp_path / "store"
    with TempfileStore("t", root=root) as store:
        if had_old:
            store.put("k", b"old version")
    done = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(root)], check=False)
    assert done.returncode == 17
    leftovers = [p for p in (root / "objects").iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1  # the half-written temp file, never at the entry's name
    # The dead writer's lock went with it, so the next store to open the directory sweeps it.
    with TempfileStore("t", root=root) as store:
        assert not leftovers[0].exists()
        if had_old:
            assert store.get("k") == b"old version"
            assert list(store.keys()) == ["k"]
        else:
            with pytest.raises(KeyNotFoundError):
                store.get("k")
            assert list(store.keys()) == []


def test_an_old_sidecar_without_its_data_is_swept(tmp_path: Path):
    root = tmp_path / "store"
    with TempfileStore("t", root=root) as store:
        store.put("kept", b"v")
        store.put("half-deleted", b"v")
        os.unlink(objects(store) / _entry_name("half-deleted"))  # a delete cut short
        fresh = objects(store) / (_entry_name("fresh-orphan") + ".meta")
        fresh.write_text("{}")
    old = time.time() - 7200
    for path in objects(store).iterdir():
        if path != fresh:
            os.utime(path, (old, old), follow_symlinks=False)
    TempfileStore("t", root=root).close()
    assert sorted(p.name for p in objects(store).iterdir()) == sorted(
        [_entry_name("kept"), _entry_name("kept") + ".meta", fresh.name]
    )


def test_failed_write_leaves_no_temp_and_the_old_entry(store: TempfileStore):
    store.put("k", b"old")

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: object) -> int:
            raise OSError("source failed")

    with pytest.raises(OSError, match="source failed"):
        store.put_stream("k", Broken())  # type: ignore[arg-type]
    assert store.get("k") == b"old"
    assert sorted(p.name for p in objects(store).iterdir()) == sorted(
        [_entry_name("k"), _entry_name("k") + ".meta"]
    )


def test_hit_through_the_engine_serves_the_local_file(store: TempfileStore):
    remote = MemoryStore()
    remote.put("path/my.file", b"remote bytes")
    cached = CachedStoreFactory(store, remote).build()
    with cached.open("path/my.file", "rb") as first:
        assert first.read() == b"remote bytes"
    remote.put("path/my.file", b"changed remotely")
    with cached.open("path/my.file", "rb") as second:
        assert second.read() == b"remote bytes"
    assert cached.stats()["remote_reads"] == 1
    assert cached.stats()["hits"] == 1


@settings(max_examples=60, deadline=None)
@given(
    key=st.text(max_size=40) | st.lists(st.sampled_from(["..", ".", "", "a", "/"])).map("/".join)
)
def test_no_key_creates_anything_outside_objects(tmp_path_factory, key: str):
    base = tmp_path_factory.mktemp("hostile")
    with TempfileStore("t", root=base / "store") as store:
        try:
            store.put(key, b"x")
        except InvalidKeyError:
            assert list(store.keys()) == []
        else:
            assert store.get(key) == b"x"
            assert list(store.keys()) == [key]
        made = {p.relative_to(base).as_posix() for p in base.rglob("*")}
    allowed = {"store", "store/objects", "store/state"}
    entry = {f"store/objects/{_entry_name(key)}", f"store/objects/{_entry_name(key)}.meta"}
    assert made - allowed <= entry


WRITER = textwrap.dedent(
    """
    import sys
    from cached_stores_factory_tempfile import TempfileStore

    store = TempfileStore("t", root=sys.argv[1])
    payload = bytes([int(sys.argv[2])]) * 300_000
    for _ in range(15):
        store.put("shared", payload)
    """
)


def test_writers_in_several_processes_never_mix(tmp_path: Path):
    root = tmp_path / "store"
    with TempfileStore("t", root=root) as store:
        store.put("shared", b"\x00" * 300_000)
        writers = [
            subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(n)]) for n in range(1, 4)
        ]
        reads = 0
        while any(w.poll() is None for w in writers) or reads < 20:
            data = store.get("shared")
            assert len(data) == 300_000
            assert data == data[:1] * 300_000
            reads += 1
        assert [w.wait(timeout=60) for w in writers] == [0, 0, 0]
        assert store.get("shared")[:1] in (b"\x01", b"\x02", b"\x03")
        assert list(store.keys()) == ["shared"]
        assert [p for p in objects(store).iterdir() if p.name.startswith(".tmp-")] == []


def test_a_closed_store_raises_instead_of_missing(tmp_path: Path):
    store = TempfileStore("t", root=tmp_path / "store")
    store.put("k", b"v")
    store.close()
    store.close()
    for call in (store.get, store.open_read, store.stat, store.delete, store.__contains__):
        with pytest.raises(StoreError, match="closed"):
            call("k")
    with pytest.raises(StoreError, match="closed"):
        store.put("k", b"v")
    with pytest.raises(StoreError, match="closed"):
        list(store.keys())


def test_a_root_with_missing_parents_is_created_private(tmp_path: Path):
    root = tmp_path / "a" / "b" / "store"
    with TempfileStore("t", root=root) as store:
        store.put("k", b"v")
    for directory in (tmp_path / "a", tmp_path / "a" / "b", root):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_delete_between_data_and_sidecar_leaves_nothing_unlisted(
    store: TempfileStore, monkeypatch: pytest.MonkeyPatch
):
    """The data goes first: whatever a racing delete leaves, keys() and the files agree."""
    store.put("k", b"old")
    publish = store._publish
    published: list[str] = []

    def publish_then_delete(temp: str, name: str) -> None:
        publish(temp, name)
        published.append(name)
        if len(published) == 1:
            store.delete("k")  # another process deletes between the two renames

    monkeypatch.setattr(store, "_publish", publish_then_delete)
    store.put("k", b"new")
    monkeypatch.undo()
    data_files = [p for p in objects(store).iterdir() if p.name == _entry_name("k")]
    assert list(store.keys()) == (["k"] if data_files else [])  # no invisible entry
    assert data_files == []  # the delete won; only a sidecar is left, which is never listed
    store.put("k", b"again")
    assert list(store.keys()) == ["k"] and store.get("k") == b"again"


def test_unreadable_entry_is_a_store_error_not_a_miss(
    store: TempfileStore, monkeypatch: pytest.MonkeyPatch
):
    store.put("k", b"v")
    real_open = os.open

    def refused(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if path == _entry_name("k"):  # what chmod 0 does to anyone but root
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refused)
    with pytest.raises(StoreError, match="Permission denied"):
        store.get("k")


def test_a_filesystem_failure_while_writing_is_a_store_error(store: TempfileStore):
    store.put("k", b"old")
    meta = objects(store) / (_entry_name("k") + ".meta")
    meta.unlink()
    meta.mkdir()  # the sidecar can no longer be renamed into place
    with pytest.raises(StoreError, match="directory"):
        store.put("k", b"new")
    assert "k" not in store  # a failed write leaves no entry, never a half-described one
    assert [p for p in objects(store).iterdir() if p.name.startswith(".tmp-")] == []


# -- integrity: every read is checked against the checksum in the file's trailer -----------

TRAILER = 20
SIZES = [0, 1, 4096, 64 * 1024, 64 * 1024 + 1, 300_000, 2 * 1024 * 1024 + 1]


def read_all(store: TempfileStore, key: str) -> bytes:
    with store.open_read(key) as entry:
        return entry.read()


def flip(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


@settings(max_examples=60, deadline=None)
@given(size=st.sampled_from(SIZES), where=st.floats(0, 1, exclude_max=True))
def test_any_flipped_bit_is_detected_never_served(tmp_path_factory, size: int, where: float):
    root = tmp_path_factory.mktemp("flip")
    with TempfileStore("t", root=root) as store:
        data = os.urandom(size)
        store.put("k", data)
        path = objects(store) / _entry_name("k")
        flip(path, int(where * (size + TRAILER)))
        with pytest.raises(CorruptEntryError, match="corrupt"):
            read_all(store, "k")
        # Never served: a small entry fails again; a streamed one was dropped when found.
        with pytest.raises((CorruptEntryError, KeyNotFoundError)):
            store.get("k")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("cut", [1, TRAILER, TRAILER + 1, "all-but-one", "empty"])
def test_a_truncated_entry_is_detected_at_open(store: TempfileStore, size: int, cut: int | str):
    store.put("k", os.urandom(size))
    path = objects(store) / _entry_name("k")
    full = path.stat().st_size
    keep = {"all-but-one": full - 1, "empty": 0}[cut] if isinstance(cut, str) else full - cut
    os.truncate(path, max(keep, 0))
    for call in (store.open_read, store.stat, store.get):
        with pytest.raises(CorruptEntryError, match="trailer"):
            call("k")


def test_an_entry_up_to_2_mib_is_checked_before_any_byte_is_served(store: TempfileStore):
    data = os.urandom(2 * 1024 * 1024)
    store.put("k", data)
    flip(objects(store) / _entry_name("k"), 2 * 1024 * 1024 - 1)
    with pytest.raises(CorruptEntryError):
        store.open_read("k")


def test_a_large_entry_is_checked_as_it_streams_and_fails_at_its_end(store: TempfileStore):
    data = os.urandom(3 * 1024 * 1024)
    store.put("k", data)
    flip(objects(store) / _entry_name("k"), 500_000)
    with store.open_read("k") as entry:
        head = entry.read(100_000)  # before the flip is reached nothing can be known
        assert head == data[:100_000]
        with pytest.raises(CorruptEntryError):
            while entry.read(65536):
                pass
        with pytest.raises(CorruptEntryError):  # and it stays failed
            entry.read()


def test_a_seek_checks_the_whole_large_entry_first(store: TempfileStore):
    data = os.urandom(3 * 1024 * 1024)
    store.put("good", data)
    store.put("bad", data)
    flip(objects(store) / _entry_name("bad"), 150_000)
    with store.open_read("good") as entry:
        entry.stream.seek(100_000)
        assert entry.read() == data[100_000:]
    with store.open_read("bad") as entry, pytest.raises(CorruptEntryError):
        entry.stream.seek(10)


def test_a_file_without_a_trailer_from_an_older_layout_is_a_corrupt_entry(store: TempfileStore):
    store.put("k", b"v" * 100)
    (objects(store) / _entry_name("k")).write_bytes(b"v" * 100)  # data alone, no trailer
    with pytest.raises(CorruptEntryError):
        store.get("k")


def test_stat_reports_the_data_size_without_the_trailer(store: TempfileStore):
    store.put_stream("k", io.BytesIO(b"12345"), etag="e")
    assert store.stat("k").size == 5
    assert store.stat("k").etag == "e"
    with store.open_read("k") as entry:
        assert entry.stat.size == 5


# -- leftovers of killed writers ------------------------------------------------------------


def test_leftovers_named_like_temp_files_are_swept_at_start_up_without_raising(tmp_path: Path):
    root = tmp_path / "store"
    TempfileStore("t", root=root).close()
    objects_dir = root / "objects"
    leftover_dir = objects_dir / ".tmp-0123456789abcdef-dir"
    (leftover_dir / "nested").mkdir(parents=True)
    (leftover_dir / "nested" / "file").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep me")
    (objects_dir / ".tmp-0123456789abcdef-link").symlink_to(outside)
    (objects_dir / ".tmp-0123456789abcdef-file").write_bytes(b"half")
    with TempfileStore("t", root=root) as store:
        store.put("k", b"v")
        assert store.get("k") == b"v"
    assert not [p for p in objects_dir.iterdir() if p.name.startswith(".tmp-")]
    assert outside.read_bytes() == b"keep me"


def test_a_live_writers_temp_file_is_not_swept(store: TempfileStore):
    import fcntl

    temp = objects(store) / ".tmp-0123456789abcdef-live"
    with temp.open("wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as a writer in another process holds it
        TempfileStore("t", root=store.root).close()
        assert temp.exists()
    TempfileStore("t", root=store.root).close()
    assert not temp.exists()


# -- a read-only or full root is a StoreError, never a raw OSError ---------------------------


def test_a_full_root_raises_store_error_and_keeps_the_old_entry(tmp_path: Path):
    with tmpfs(tmp_path / "small", "1m") as mount, TempfileStore("t", root=mount) as store:
        store.put("k", b"old")
        with pytest.raises(StoreError, match="No space left") as caught:
            store.put_stream("k", ChunkedStream(4 * 1024 * 1024))  # type: ignore[arg-type]
        assert not isinstance(caught.value, OSError)
        assert store.get("k") == b"old"
        assert not [p for p in objects(store).iterdir() if p.name.startswith(".tmp-")]
        store.put("small", b"fits again")
        assert store.get("small") == b"fits again"


def test_a_read_only_root_opens_serves_and_raises_store_error_on_writes(tmp_path: Path):
    with tmpfs(tmp_path / "ro", "4m") as mount:
        with TempfileStore("t", root=mount) as store:
            store.put("k", b"value")
            (objects(store) / ".tmp-0123456789abcdef-dead").write_bytes(b"x")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        with TempfileStore("t", root=mount) as store:  # the sweep cannot unlink: no raise
            assert store.get("k") == b"value"
            assert "k" in store
            for write in (lambda: store.put("k", b"new"), lambda: store.delete("k")):
                with pytest.raises(StoreError, match="Read-only"):
                    write()
            assert store.get("k") == b"value"


def test_a_missing_objects_directory_on_a_read_only_root_is_a_store_error(tmp_path: Path):
    with tmpfs(tmp_path / "ro", "1m") as mount:
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        with pytest.raises(StoreError, match="Read-only"):
            TempfileStore("t", root=mount)


def test_a_root_that_is_a_file_is_a_clear_error(tmp_path: Path):
    root = tmp_path / "file"
    root.write_bytes(b"")
    with pytest.raises(StoreError, match=f"{root}"):
        TempfileStore("t", root=root)


def test_a_small_entry_is_read_only_like_a_file_opened_rb(store: TempfileStore):
    store.put("k", b"v")
    with store.open_read("k") as entry:
        assert not entry.stream.writable()
        with pytest.raises(io.UnsupportedOperation):
            entry.stream.write(b"x")


def test_a_hit_runs_few_python_layers(tmp_path: Path) -> None:
    """A 4 KiB hit through `open(key, "rb")`: the engine's facade, the store's open, and little
    else.  Its time is Python, not I/O (four system calls against a raw read's nine), so the
    count of Python-level calls is the hit's cost that a test can hold still."""
    remote = MemoryStore()
    remote.put("k/x.bin", os.urandom(4096))
    cached = CachedStoreFactory(TempfileStore("t", root=tmp_path / "t"), remote).build()
    cached.get("k/x.bin")
    calls: list[str] = []

    def profile(frame: object, event: str, arg: object) -> None:
        if event == "call":
            calls.append(frame.f_code.co_qualname)  # type: ignore[attr-defined]

    sys.setprofile(profile)
    try:
        with cached.open("k/x.bin", "rb") as handle:
            data = handle.read()
    finally:
        sys.setprofile(None)
    assert len(data) == 4096
    assert cached.stats()["hits"] == 1
    assert len(calls) <= 6, calls
    assert not [c for c in calls if "wrapper" in c or "is_fresh" in c or "on_hit" in c], calls
