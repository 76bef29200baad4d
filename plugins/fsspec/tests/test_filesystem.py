"""CachedStoreFileSystem over memory stores: fsspec's conventions, counted remote calls.

The stack (pandas, pyarrow) against the real S3 endpoint is in tests/test_fsspec_data_stack.py.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import threading
from collections import Counter
from collections.abc import Iterator
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

    def keys(self, prefix: str = "") -> Iterator[str]:
        self.calls["keys"] += 1
        return super().keys(prefix)

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
    # Fresh local copy: no remote call but the listing that finds "k" is not a directory.
    assert dict(remote.calls) == {**calls, "keys": 1}
    policy.fresh = False
    fs.info("k")  # remembered: the listing's time (listings_expiry_time) has not run out
    assert remote.calls["stat"] == calls["stat"]
    fs.invalidate_cache("k")
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


# -- what is known of names: listings, missing keys ------------------------------------------


def test_a_listing_answers_ls_info_exists_find_and_glob_until_a_write(
    fs: CachedStoreFileSystem, remote: CountingRemote, policy: Expiring
) -> None:
    fs.pipe({"d/a": b"1", "d/e/b": b"22", "top": b"t"})
    policy.fresh = False  # no local copy answers: every detail would be a request
    remote.calls.clear()
    assert fs.ls("d", detail=False) == ["d/a", "d/e"]
    assert remote.calls == {"keys": 1}
    assert [entry["size"] for entry in fs.ls("d")] == [1, 0]  # each file's details: asked once
    assert remote.calls == {"keys": 1, "stat": 1}
    assert fs.info("d/a")["size"] == 1 and fs.exists("d/e/b") and fs.isdir("d/e")
    assert not fs.exists("d/nothing")  # the listing says so: no request
    assert fs.find("d") == ["d/a", "d/e/b"] and fs.glob("d/*") == ["d/a", "d/e"]
    assert fs.size("d/e/b") == 2
    assert remote.calls == {"keys": 1, "stat": 2}
    fs.pipe_file("d/new", b"333")  # through the cache: the listing goes at once
    assert fs.ls("d", detail=False) == ["d/a", "d/e", "d/new"]
    with fs.open("d/e/c", "wb") as handle:
        handle.write(b"4")
    assert fs.find("d") == ["d/a", "d/e/b", "d/e/c", "d/new"]
    fs.rm("d/e", recursive=True)
    assert fs.ls("d", detail=False) == ["d/a", "d/new"] and not fs.exists("d/e/c")
    fs.cp_file("d/a", "d/copy")
    fs.mv("d/new", "d/moved")
    assert fs.ls("d", detail=False) == ["d/a", "d/copy", "d/moved"]


def test_listings_expire_and_zero_turns_them_off(remote: CountingRemote) -> None:
    store = CachedStore(MemoryStore(), remote)
    store.put("d/a", b"1")
    remote.calls.clear()
    off = CachedStoreFileSystem(store=store, listings_expiry_time=0)
    for _ in range(3):
        assert off.ls("d", detail=False) == ["d/a"]
    assert remote.calls["keys"] == 3
    expiring = CachedStoreFileSystem(store=store, listings_expiry_time=30)
    expiring.ls("d")
    expiring.ls("d")
    assert remote.calls["keys"] == 4
    expiring.dircache._times["d"] -= 31  # listed 31 s ago: expired
    assert expiring.ls("d", detail=False) == ["d/a"] and remote.calls["keys"] == 5
    expiring.invalidate_cache("d")
    expiring.ls("d")
    assert remote.calls["keys"] == 6


def test_a_missing_key_is_answered_missing_for_missing_ttl(remote: CountingRemote) -> None:
    store = CachedStore(MemoryStore(), remote)
    fs = CachedStoreFileSystem(store=store, missing_ttl=60)
    for _ in range(3):
        assert not fs.exists("gone/x")
        with pytest.raises(FileNotFoundError):
            fs.open("gone/x", "rb")
    assert remote.calls == {"stat": 1, "keys": 1}  # asked once, then known missing
    fs.pipe_file("gone/x", b"here now")  # a write through the cache: known at once
    assert fs.cat_file("gone/x") == b"here now" and fs.exists("gone")
    never = CachedStoreFileSystem(store=store, missing_ttl=0)
    remote.calls.clear()
    for _ in range(2):
        with pytest.raises(FileNotFoundError):
            never.open("other", "rb")
    assert remote.calls["stat"] == 2  # asked each time


def test_a_write_through_any_filesystem_over_the_store_updates_the_others(
    fs: CachedStoreFileSystem,
) -> None:
    fs.pipe_file("d/a", b"1")
    assert fs.ls("d", detail=False) == ["d/a"] and not fs.exists("d/b")
    other = CachedStoreFileSystem(store=fs.store)  # another thread's filesystem, say
    assert other is not fs
    other.pipe_file("d/b", b"2")
    assert fs.ls("d", detail=False) == ["d/a", "d/b"] and fs.cat_file("d/b") == b"2"


def test_open_takes_size_and_etag_from_the_listing(local: MemoryStore) -> None:
    remote = VersionedRemote()
    body = bytes(range(256)) * 400
    remote.put("big/x.bin", body)
    remote.put("big/small.txt", b"small")
    store = CachedStore(local, remote)
    fs = CachedStoreFileSystem(store=store, block_size=4096, whole_limit=16384)
    assert fs.store.partials.block_size == 4096 and fs.store.partials.whole_limit == 16384
    assert [entry["size"] for entry in fs.ls("big")] == [5, len(body)]
    remote.calls.clear()
    assert fs.cat_file("big/x.bin", 50_000, 50_100) == body[50_000:50_100]
    assert fs.cat_file("big/small.txt") == b"small"
    # No stat: one ranged read of the large file, one read of the small one.
    assert remote.calls == {"open_range": 1, "range_bytes": 4096, "open_read": 1}


@pytest.mark.parametrize(
    ("option", "value"),
    [("block_size", 0), ("whole_limit", -1), ("block_size", 1.5), ("missing_ttl", -1),
     ("missing_ttl", None), ("listings_expiry_time", "10")],
)  # fmt: skip
def test_options_out_of_range_are_refused_by_name(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"csf:// option {option} must be"):
        CachedStoreFileSystem(store=CachedStore(MemoryStore(), MemoryStore()), **{option: value})


operations = st.lists(
    st.tuples(
        st.sampled_from(["write", "delete", "ls", "find", "exists", "info"]),
        st.lists(segment, min_size=1, max_size=3).map("/".join),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(operations=operations)
def test_cached_names_always_match_fsspecs_memory_filesystem(
    operations: list[tuple[str, str]],
) -> None:
    """Writes and deletes through the cache, listings in between: never a stale answer."""
    ours = CachedStoreFileSystem(
        store=CachedStore(MemoryStore(), MemoryStore()), listings_expiry_time=None, missing_ttl=60
    )
    reference = fsspec.filesystem("memory", skip_instance_cache=True)
    reference.store, reference.pseudo_dirs = {}, [""]
    for operation, path in operations:
        if operation == "write":
            if any(k.startswith(path + "/") or path.startswith(k + "/") for k in ours.find("")):
                continue  # a key cannot also be a directory
            ours.pipe_file(path, b"x")
            reference.pipe_file("/" + path, b"x")
        elif operation == "delete":
            if ours.isfile(path):
                ours.rm_file(path)
                reference.rm_file("/" + path)
        elif operation == "ls":
            if reference.exists("/" + path):
                assert ours.ls(path, detail=False) == sorted(
                    name.strip("/") for name in reference.ls("/" + path, detail=False)
                )
        elif operation == "find":
            assert ours.find(path) == sorted(name.strip("/") for name in reference.find("/" + path))
        else:
            assert ours.exists(path) == reference.exists("/" + path)
            assert ours.isdir(path) == reference.isdir("/" + path)


class ListingRace(MemoryStore):
    """A remote whose listing lets a write run while it is being read."""

    def __init__(self) -> None:
        super().__init__()
        self.during_listing: Any = None

    def keys(self, prefix: str = "") -> Iterator[str]:
        names = list(super().keys(prefix))
        if self.during_listing is not None:
            write, self.during_listing = self.during_listing, None
            write()
        return iter(names)


def test_a_listing_that_overlaps_a_write_is_not_kept() -> None:
    remote = ListingRace()
    fs = CachedStoreFileSystem(store=CachedStore(MemoryStore(), remote), listings_expiry_time=None)
    fs.pipe_file("d/a", b"1")
    remote.during_listing = lambda: fs.pipe_file("d/b", b"2")
    assert fs.ls("d", detail=False) == ["d/a"]  # listed before the write landed
    assert fs.ls("d", detail=False) == ["d/a", "d/b"]  # ... so it was not kept


# -- pickling: a filesystem from a config rebuilds its store in another process ---------------


def tempfile_config(tmp_path: Path) -> Path:
    config = tmp_path / "cache.toml"
    config.write_text(
        f'[local]\nstore = "tempfile"\nname = "local"\nroot = "{tmp_path / "local"}"\n\n'
        f'[remote]\nstore = "tempfile"\nname = "remote"\nroot = "{tmp_path / "remote"}"\n'
    )
    return config


def test_a_filesystem_from_a_config_pickles_and_rebuilds_the_same_store_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle
    import subprocess
    import sys

    tempfile_config(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative path to the config, as users write it
    fs = fsspec.filesystem("csf", config="cache.toml", block_size=4096, whole_limit=8192)
    fs.pipe_file("data/x.bin", b"shared" * 1000)
    payload = pickle.dumps(fs)
    assert pickle.loads(payload).store is fs.store  # in this process: the one store
    worker = (
        "import pickle, sys\n"
        "fs = pickle.loads(sys.stdin.buffer.read())\n"
        "partials = fs.store.partials\n"
        "print(fs.cat_file('data/x.bin').decode()[:12], partials.block_size,"
        " partials.whole_limit, fs.store.local.root)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", worker], input=payload, capture_output=True, cwd="/", check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == [
        "sharedshared",
        "4096",
        "8192",
        str(tmp_path / "local"),
    ]


def test_a_filesystem_over_a_store_object_refuses_pickling_by_name() -> None:
    import pickle

    fs = CachedStoreFileSystem(store=CachedStore(MemoryStore(), MemoryStore()))
    with pytest.raises(TypeError, match=r"wraps a store object .* build it from config="):
        pickle.dumps(fs)


class ListingRemote(CountingRemote):
    """A remote whose listing carries each key's stat, as S3's does."""

    def listing(self, prefix: str = "") -> Iterator[tuple[str, EntryStat]]:
        self.calls["listing"] += 1
        return ((key, MemoryStore.stat(self, key)) for key in MemoryStore.keys(self, prefix))


def test_a_listing_with_stats_spares_a_request_per_file(local: MemoryStore) -> None:
    remote = ListingRemote()
    remote.put("d/a", b"1")
    remote.put("d/e/b", b"22")
    remote.put(".csf-partial/0123abcd/0", b"another client's block")
    fs = CachedStoreFileSystem(store=CachedStore(local, remote))
    remote.calls.clear()
    assert [(e["name"], e["size"]) for e in fs.ls("")] == [("d", 0)]  # the reserved key: never
    assert fs.find("d", detail=True)["d/e/b"]["size"] == 2
    assert fs.du("d") == 3 and fs.info("d/a")["size"] == 1
    assert fs.cat_file("d/e/b") == b"22"
    assert remote.calls == {"listing": 1, "open_read": 1}  # no stat at all


def test_options_come_from_fsspecs_own_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    conf: dict[str, dict[str, Any]] = {}
    fsspec.config.set_conf_env(
        conf, {"FSSPEC_CSF_BLOCK_SIZE": "4096", "FSSPEC_CSF_MISSING_TTL": "0"}
    )
    monkeypatch.setitem(fsspec.config.conf, "csf", conf["csf"])
    fs = fsspec.filesystem("csf", config=MEMORY_CONFIG)
    assert fs.store.partials.block_size == 4096 and fs.missing_ttl == 0


def test_a_looked_up_stat_spares_the_next_lookups_and_the_open(
    fs: CachedStoreFileSystem, remote: CountingRemote, policy: Expiring
) -> None:
    remote.put("k", b"12345")
    remote.calls.clear()
    policy.fresh = False  # no local copy answers
    for _ in range(3):  # pandas and pyarrow ask for a file's info again and again
        assert fs.info("k")["size"] == 5 and fs.isfile("k")
    assert fs.cat_file("k") == b"12345"
    assert remote.calls == {"stat": 1, "open_read": 1}
    fs.pipe_file("k", b"123")  # a write through the cache: the old lookup goes at once
    assert fs.info("k")["size"] == 3 and remote.calls["stat"] == 2
    off = CachedStoreFileSystem(store=fs.store, listings_expiry_time=0)
    off.info("k")
    off.info("k")
    assert remote.calls["stat"] == 4


def test_a_read_that_finds_the_object_changed_makes_the_next_open_ask_again(
    local: MemoryStore,
) -> None:
    from cached_stores_factory.errors import EntryChangedError

    remote = VersionedRemote()
    remote.put("big.bin", b"old" * 10_000)
    fs = CachedStoreFileSystem(store=CachedStore(local, remote), block_size=4096, whole_limit=8192)
    assert fs.info("big.bin")["size"] == 30_000  # remembered: size and etag
    remote.put("big.bin", b"new" * 10_000)  # changed by another client, behind the cache's back
    with pytest.raises(EntryChangedError):
        fs.cat_file("big.bin", 0, 3)  # read with the remembered etag: the remote refuses it
    assert fs.cat_file("big.bin", 0, 3) == b"new"  # asked again, not refused again
