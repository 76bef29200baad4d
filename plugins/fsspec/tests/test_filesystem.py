"""CachedStoreFileSystem over memory stores: fsspec's conventions, counted remote calls.

The stack (pandas, pyarrow) against the real S3 endpoint is in tests/test_fsspec_data_stack.py.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import threading
from collections import Counter
from pathlib import Path
from typing import IO, Any

import fsspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cached_stores_factory import CachedStore, CachePolicy, EntryReader, EntryStat, MemoryStore
from cached_stores_factory.errors import InvalidKeyError, StoreError
from cached_stores_factory_fsspec import CachedStoreFileSystem

MEMORY_CONFIG = {"local": {"store": "memory"}, "remote": {"store": "memory"}}


class CountingRemote(MemoryStore):
    """A memory remote that counts each call that would be a request, and can fail writes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.fail_writes = False

    def open_read(self, key: str) -> EntryReader:
        self.calls["open_read"] += 1
        return super().open_read(key)

    def stat(self, key: str) -> EntryStat:
        self.calls["stat"] += 1
        return super().stat(key)

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        self.calls["put_stream"] += 1
        if self.fail_writes:
            raise StoreError("the remote refused the write")
        return super().put_stream(key, stream, etag=etag)


class Expiring(CachePolicy):
    """Fresh until `expire()`: a TTL without a clock."""

    def __init__(self) -> None:
        self.fresh = True

    def is_fresh(self, key: str, stat: EntryStat) -> bool:
        return self.fresh


@pytest.fixture
def remote() -> CountingRemote:
    return CountingRemote()


@pytest.fixture
def local() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def policy() -> Expiring:
    return Expiring()


@pytest.fixture
def fs(local: MemoryStore, remote: CountingRemote, policy: Expiring) -> CachedStoreFileSystem:
    return CachedStoreFileSystem(store=CachedStore(local, remote, policy))


# -- registration and construction --------------------------------------------------------


def test_csf_is_registered_through_fsspecs_own_entry_point_group() -> None:
    points = importlib.metadata.entry_points(group="fsspec.specs")
    assert [point.value for point in points if point.name == "csf"] == [
        "cached_stores_factory_fsspec:CachedStoreFileSystem"
    ]
    assert fsspec.get_filesystem_class("csf") is CachedStoreFileSystem


def test_a_config_file_and_a_url_with_storage_options(tmp_path: Path) -> None:
    config = tmp_path / "cache.toml"
    config.write_text('[local]\nstore = "memory"\n\n[remote]\nstore = "memory"\n')
    fs = fsspec.filesystem("csf", config=str(config))
    assert isinstance(fs, CachedStoreFileSystem)
    fs.pipe_file("csf://data/x.txt", b"through the cache")
    # Equal arguments give the same instance (fsspec's instance cache), so the same store.
    with fsspec.open("csf://data/x.txt", "rb", config=str(config)) as handle:
        assert handle.read() == b"through the cache"
    opened, path = fsspec.core.url_to_fs("csf://data/x.txt", config=str(config))
    assert opened is fs and path == "data/x.txt"


def test_a_config_mapping() -> None:
    fs = fsspec.filesystem("csf", config=MEMORY_CONFIG, skip_instance_cache=True)
    fs.pipe_file("k", b"v")
    assert fs.cat_file("csf://k") == b"v"


def test_a_bad_config_names_the_section() -> None:
    with pytest.raises(ValueError, match="remote"):
        fsspec.filesystem("csf", config={"local": {"store": "memory"}}, skip_instance_cache=True)


def test_wrapped_stores_are_never_shared_by_fsspecs_instance_cache() -> None:
    first, second = (CachedStore(MemoryStore(), MemoryStore()) for _ in range(2))
    assert repr(first) == repr(second)  # what fsspec's cache key would be made of
    fs1 = fsspec.filesystem("csf", store=first)
    fs2 = fsspec.filesystem("csf", store=second)
    assert fs1.store is first and fs2.store is second


def test_the_fsspec_extra_of_the_bundle_brings_this_distribution() -> None:
    requirements = importlib.metadata.requires("cached-stores-factory") or []
    assert "cached-stores-factory-fsspec==0.1.0; extra == 'fsspec'" in requirements
    assert any(r.startswith("fsspec") for r in importlib.metadata.requires(
        "cached-stores-factory-fsspec") or [])  # fmt: skip


def test_exactly_one_of_config_and_store() -> None:
    with pytest.raises(ValueError, match=r"exactly one of config= .* and store="):
        CachedStoreFileSystem(skip_instance_cache=True)
    with pytest.raises(ValueError, match="exactly one"):
        CachedStoreFileSystem(
            MEMORY_CONFIG, store=CachedStore(MemoryStore(), MemoryStore()), skip_instance_cache=True
        )
    with pytest.raises(TypeError, match="built CachedStore"):
        CachedStoreFileSystem(store=MemoryStore())  # type: ignore[arg-type]


# -- paths and metadata -------------------------------------------------------------------


def test_protocol_and_slashes_are_stripped() -> None:
    strip = CachedStoreFileSystem._strip_protocol
    assert strip("csf://data/x.parquet") == "data/x.parquet"
    assert strip("csf::data/x/") == "data/x"
    assert strip("/data/x") == "data/x"
    assert strip(["csf://a", "b/"]) == ["a", "b"]


@pytest.mark.parametrize("path", ["csf://../etc/passwd", "a/../../b", "a//b", "a/./b"])
def test_hostile_paths_are_refused_before_any_store_sees_them(
    fs: CachedStoreFileSystem, remote: CountingRemote, path: str
) -> None:
    with pytest.raises(InvalidKeyError):
        fs.pipe_file(path, b"x")
    with pytest.raises(InvalidKeyError):
        fs.open(path, "rb")
    assert remote.calls["put_stream"] == 0 and remote.calls["open_read"] == 0


@pytest.mark.parametrize("path", ["csf://.csf-partial/0123abcd/0", ".csf-partial", ".csf-partial/"])
def test_the_reserved_prefix_is_refused_and_never_listed(
    fs: CachedStoreFileSystem, local: MemoryStore, remote: CountingRemote, path: str
) -> None:
    local.put(".csf-partial/0123abcd/0", b"block")
    remote.put(".csf-partial/0123abcd/0", b"written by another client")
    remote.calls.clear()
    for call in (
        lambda: fs.pipe_file(path, b"x"),
        lambda: fs.cat_file(path),
        lambda: fs.open(path, "rb"),
        lambda: fs.info(path),
        lambda: fs.rm_file(path),
    ):
        with pytest.raises(InvalidKeyError, match="reserves for the blocks of ranged reads"):
            call()
    assert not remote.calls
    assert local.get(".csf-partial/0123abcd/0") == b"block"
    fs.pipe_file("top", b"t")
    assert fs.ls("", detail=False) == ["top"]
    assert fs.find("", withdirs=True) == ["top"]


def test_info_and_ls_follow_fsspec_conventions(fs: CachedStoreFileSystem) -> None:
    fs.pipe({"data/a.csv": b"a,b\n", "data/sub/b.bin": b"\0" * 10, "top": b"t"})
    info = fs.info("csf://data/a.csv")
    assert info["name"] == "data/a.csv" and info["size"] == 4 and info["type"] == "file"
    assert isinstance(info["mtime"], float)
    assert fs.info("data") == {"name": "data", "size": 0, "type": "directory"}
    assert fs.info("") == {"name": "", "size": 0, "type": "directory"}
    assert fs.ls("data", detail=False) == ["data/a.csv", "data/sub"]
    assert fs.ls("", detail=False) == ["data", "top"]
    assert [entry["type"] for entry in fs.ls("data")] == ["file", "directory"]
    assert fs.ls("data/a.csv", detail=False) == ["data/a.csv"]  # a file lists as itself
    assert fs.isdir("data/sub") and fs.isfile("data/sub/b.bin") and not fs.isfile("data")
    assert fs.exists("top") and not fs.exists("missing") and not fs.exists("dat")
    with pytest.raises(FileNotFoundError):
        fs.info("data/missing")
    with pytest.raises(FileNotFoundError):
        fs.ls("missing")
    assert fs.size("data/sub/b.bin") == 10
    assert fs.modified("top").timestamp() == pytest.approx(fs.info("top")["mtime"])


def test_find_lists_files_and_optionally_directories(fs: CachedStoreFileSystem) -> None:
    fs.pipe({"a/b/c": b"1", "a/d": b"2", "e": b"3"})
    assert fs.find("") == ["a/b/c", "a/d", "e"]
    assert fs.find("a", withdirs=True) == ["a", "a/b", "a/b/c", "a/d"]
    assert fs.find("a", maxdepth=1) == ["a/d"]
    assert fs.find("a", maxdepth=1, withdirs=True) == ["a", "a/b", "a/d"]
    assert fs.find("e") == ["e"]  # a file finds itself
    assert fs.find("nothing") == []
    assert set(fs.find("a", detail=True)) == {"a/b/c", "a/d"}
    assert fs.glob("a/*") == ["a/b", "a/d"]
    assert fs.du("a") == 2


def test_info_comes_from_the_fresh_local_copy_else_the_remote(
    fs: CachedStoreFileSystem, remote: CountingRemote, policy: Expiring
) -> None:
    remote.put("k", b"12345")
    with pytest.raises(KeyError):
        fs.store.local.stat("k")
    assert fs.info("k")["size"] == 5 and remote.calls["stat"] == 1  # not cached: asks
    assert fs.cat_file("k") == b"12345"
    calls = dict(remote.calls)
    assert fs.info("k")["size"] == 5 and fs.ls("k")[0]["size"] == 5
    assert dict(remote.calls) == calls  # fresh local copy: no remote call at all
    policy.fresh = False
    fs.info("k")
    assert remote.calls["stat"] == calls["stat"] + 1


# -- reading and writing ------------------------------------------------------------------


def test_cat_file_ranges_like_python_slices(fs: CachedStoreFileSystem) -> None:
    data = bytes(range(100))
    fs.pipe_file("r", data)
    for start, end in [(None, None), (10, 20), (90, None), (None, 5), (-10, None), (5, -5),
                       (-3, -1), (50, 40), (200, None), (0, 1000)]:  # fmt: skip
        assert fs.cat_file("r", start, end) == data[start:end], (start, end)
    assert fs.read_block("r", 10, 5) == data[10:15]


def test_open_reads_and_writes_bytes_and_text(fs: CachedStoreFileSystem) -> None:
    with fs.open("csf://w/x.txt", "wb") as handle:
        handle.write(b"line 1\n")
        handle.write(b"line 2\n")
    with fs.open("w/x.txt", "rb") as handle:
        assert handle.read() == b"line 1\nline 2\n"
    with fs.open("w/y.txt", "w", encoding="utf-8") as text:
        text.write("h\u00e9")
    with fs.open("w/y.txt", "r", encoding="utf-8") as text:
        assert text.read() == "h\u00e9"
    with pytest.raises(FileNotFoundError):
        fs.open("w/missing", "rb")
    with pytest.raises(ValueError, match="'rb', 'wb'"):
        fs.open("w/x.txt", "r+b")


def test_a_failed_remote_write_raises_and_reads_still_see_the_old_value(
    fs: CachedStoreFileSystem, remote: CountingRemote, local: MemoryStore
) -> None:
    fs.pipe_file("k", b"old")
    remote.fail_writes = True
    with pytest.raises(StoreError, match="refused"):
        fs.pipe_file("k", b"new")
    with pytest.raises(StoreError, match="refused"):
        fs.put_file(__file__, "k")
    assert "k" not in local  # dropped before the attempt: never older than the remote
    assert fs.cat_file("k") == b"old"


def test_pipe_file_create_mode_refuses_an_existing_file(fs: CachedStoreFileSystem) -> None:
    fs.pipe_file("k", b"1", mode="create")
    with pytest.raises(FileExistsError):
        fs.pipe_file("k", b"2", mode="create")
    assert fs.cat_file("k") == b"1"


def test_transactions_are_refused_rather_than_half_done(fs: CachedStoreFileSystem) -> None:
    with pytest.raises(NotImplementedError, match="transactions"), fs.transaction:
        fs.pipe_file("k", b"written at once, so the transaction could not take it back")
    with pytest.raises(NotImplementedError, match="transactions"):
        fs.start_transaction()
    with pytest.raises(NotImplementedError, match="transactions"):
        fs.open("k", "wb", autocommit=False)
    assert not fs.exists("k")


def test_rm_files_and_directories(fs: CachedStoreFileSystem, remote: CountingRemote) -> None:
    fs.pipe({"d/a": b"1", "d/e/b": b"2", "keep": b"3"})
    with pytest.raises(IsADirectoryError, match="recursive=True"):
        fs.rm("d")
    fs.rm("d", recursive=True)
    assert fs.find("") == ["keep"] and list(remote.keys()) == ["keep"]
    with pytest.raises(FileNotFoundError):
        fs.rm("d")
    with pytest.raises(FileNotFoundError):
        fs.rm_file("nothing")
    fs.rm_file("csf://keep")
    assert fs.find("") == [] and list(fs.store.local.keys()) == []


def test_get_and_put_copy_trees(fs: CachedStoreFileSystem, tmp_path: Path) -> None:
    source = tmp_path / "up"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"a")
    (source / "sub" / "b.txt").write_bytes(b"b" * 3_000_000)
    fs.put(str(source), "tree", recursive=True)
    assert fs.find("tree") == ["tree/a.txt", "tree/sub/b.txt"]
    assert fs.cat_file("tree/sub/b.txt") == b"b" * 3_000_000
    fs.get("tree", str(tmp_path / "down"), recursive=True)
    assert (tmp_path / "down" / "sub" / "b.txt").read_bytes() == b"b" * 3_000_000
    assert (tmp_path / "down" / "a.txt").read_bytes() == b"a"
    fs.get_file("tree/a.txt", str(tmp_path / "one.txt"))
    assert (tmp_path / "one.txt").read_bytes() == b"a"


# -- the same answers as fsspec's own memory filesystem ----------------------------------

segment = st.sampled_from(["a", "b", "c.txt", "d"])
key_sets = st.lists(
    st.lists(segment, min_size=1, max_size=4).map("/".join), min_size=1, max_size=12, unique=True
).filter(
    # a key cannot also be a directory: S3 allows it, a filesystem does not
    lambda keys: not any(other.startswith(key + "/") for key in keys for other in keys)
)


@settings(max_examples=60, deadline=None)
@given(keys=key_sets, probe=st.lists(segment, min_size=0, max_size=3).map("/".join))
def test_listings_match_fsspecs_memory_filesystem(keys: list[str], probe: str) -> None:
    ours = CachedStoreFileSystem(store=CachedStore(MemoryStore(), MemoryStore()))
    reference = fsspec.filesystem("memory", skip_instance_cache=True)
    reference.store, reference.pseudo_dirs = {}, [""]
    for key in keys:
        ours.pipe_file(key, key.encode())
        reference.pipe_file("/" + key, key.encode())

    def plain(names: Any) -> list[str]:
        return sorted(name.strip("/") for name in names)

    assert ours.find(probe) == plain(reference.find("/" + probe))
    assert ours.find(probe, withdirs=True) == plain(reference.find("/" + probe, withdirs=True))
    assert ours.find(probe, maxdepth=2) == plain(reference.find("/" + probe, maxdepth=2))
    assert ours.exists(probe) == reference.exists("/" + probe)
    assert ours.isdir(probe) == reference.isdir("/" + probe)
    assert ours.isfile(probe) == reference.isfile("/" + probe)
    if reference.exists("/" + probe):
        assert ours.ls(probe, detail=False) == plain(reference.ls("/" + probe, detail=False))
        assert [e["type"] for e in ours.ls(probe)] == [
            e["type"] for e in sorted(reference.ls("/" + probe), key=lambda e: e["name"])
        ]
    else:
        with pytest.raises(FileNotFoundError):
            ours.ls(probe)
    assert io.BytesIO(ours.cat_file(keys[0])).read() == keys[0].encode()


# -- large objects: blocks --------------------------------------------------------------------


class VersionedRemote(CountingRemote):
    """Entries carry an etag (a hash of their bytes), so they can be read in ranges."""

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        data = stream.read()
        return super().put_stream(key, io.BytesIO(data), etag=hashlib.sha1(data).hexdigest())

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, io.BytesIO(data))

    def open_range(
        self, key: str, start: int, end: int, *, if_match: str | None = None
    ) -> EntryReader:
        self.calls["open_range"] += 1
        self.calls["range_bytes"] += end - start
        self.calls["open_read"] -= 1  # the default reads through open_read; count it once
        return super().open_range(key, start, end, if_match=if_match)


def test_a_large_cold_object_is_read_in_blocks(local: MemoryStore) -> None:
    remote = VersionedRemote()
    body = bytes(range(256)) * 400  # 100 KiB: 25 blocks of 4 KiB
    remote.put("big.bin", body)
    store = CachedStore(local, remote)
    store.partials.block_size, store.partials.whole_limit = 4096, 16384
    fs = CachedStoreFileSystem(store=store)
    assert fs.cat_file("big.bin", 50_000, 50_100) == body[50_000:50_100]
    assert fs.cat_file("big.bin", -10) == body[-10:]
    assert remote.calls["open_read"] == 0 and remote.calls["range_bytes"] == 2 * 4096
    calls = dict(remote.calls)
    assert fs.info("big.bin")["size"] == len(body)  # from the partial entry: no request
    assert fs.cat_file("big.bin", 49_200, 50_050) == body[49_200:50_050]
    assert dict(remote.calls) == calls
    with fs.open("big.bin", "rb") as handle:
        assert handle.read() == body  # from the start, past the first block: the rest whole
    assert remote.calls["open_read"] == 1
    assert fs.cat_file("big.bin") == body and remote.calls["open_read"] == 1


def test_every_thread_shares_the_one_store_built_from_a_config(tmp_path: Path) -> None:
    config = tmp_path / "cache.toml"
    config.write_text('[local]\nstore = "memory"\n\n[remote]\nstore = "memory"\n')
    found: list[CachedStoreFileSystem] = []

    def build() -> None:  # as fsspec does in a new thread: a filesystem of its own
        found.append(fsspec.filesystem("csf", config=str(config), skip_instance_cache=True))

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len({id(fs) for fs in found}) == 4  # four filesystems ...
    assert len({id(fs.store) for fs in found}) == 1  # ... over one cached store
    config.write_text('[local]\nstore = "memory"\n\n[remote]\nstore = "memory"\n\n\n')
    edited = fsspec.filesystem("csf", config=str(config), skip_instance_cache=True)
    assert edited.store is not found[0].store  # an edited file builds anew
    mapping = fsspec.filesystem("csf", config=dict(MEMORY_CONFIG), skip_instance_cache=True)
    again = fsspec.filesystem("csf", config=dict(MEMORY_CONFIG), skip_instance_cache=True)
    assert mapping.store is again.store
