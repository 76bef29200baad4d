"""The policies through the real engine over the tempfile store: restarts, sharing, limits."""

from __future__ import annotations

import io
import os
import random
import sqlite3
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from policies_testlib import age_tempfile_store

from cached_stores_factory import CachedStore, CachedStoreFactory, CachePolicy, MemoryStore, Store
from cached_stores_factory.testing.faults import tmpfs
from cached_stores_factory.testing.servers import RedisServer
from cached_stores_factory.testing.stores import DictStore
from cached_stores_factory_policies import FIFOCache, LRUCache, TTLCache, _ledger
from cached_stores_factory_tempfile import TempfileStore
from cached_stores_factory_tempfile._store import _entry_name


@pytest.fixture
def open_cache(tmp_path: Path) -> Iterator[Callable[..., CachedStore]]:
    """Cached stores over one tempfile directory, as separate processes would open it."""
    remote = MemoryStore()
    opened: list[CachedStore] = []

    def open_cache(policy: CachePolicy, remote_store: Store = remote) -> CachedStore:
        local = TempfileStore("local", root=tmp_path / "local", fsync=False)
        opened.append(CachedStoreFactory(local, remote_store, policy).build())
        return opened[-1]

    yield open_cache
    for cached in opened:
        cached.policy.close()


def put(cached: CachedStore, key: str, data: bytes = b"data") -> None:
    cached.put_stream(key, io.BytesIO(data))


def read(cached: CachedStore, key: str) -> bytes:
    with cached.open_read(key) as entry:
        return entry.read()


def held(cached: CachedStore) -> set[str]:
    return set(cached.local.keys())


@pytest.mark.parametrize("policy", [FIFOCache, LRUCache])
def test_fifo_order_survives_a_restart(
    open_cache: Callable[..., CachedStore], policy: type[FIFOCache]
) -> None:
    first = open_cache(policy(3))
    for key in "abc":
        put(first, key)
    first.close()
    second = open_cache(policy(3))
    put(second, "d")
    assert held(second) == {"b", "c", "d"}


def test_lru_recency_survives_a_restart(open_cache: Callable[..., CachedStore]) -> None:
    first = open_cache(LRUCache(3))
    for key in "abc":
        put(first, key)
    assert read(first, "a") == b"data"  # a is now the most recently used
    first.close()  # writes the buffered use
    second = open_cache(LRUCache(3))
    put(second, "d")
    assert held(second) == {"a", "c", "d"}
    assert second.stats()["evictions"] == 1


def test_fifo_reads_do_not_reorder(open_cache: Callable[..., CachedStore]) -> None:
    cached = open_cache(FIFOCache(3))
    for key in "abc":
        put(cached, key)
    for _ in range(3):
        read(cached, "a")
    put(cached, "d")
    assert held(cached) == {"b", "c", "d"}
    assert cached.stats()["remote_reads"] == 0


def test_lru_uses_in_one_process_count_in_another(
    open_cache: Callable[..., CachedStore],
) -> None:
    """A's hit reaches the shared ledger with A's next insert; B's eviction then spares it."""
    a = open_cache(LRUCache(3))
    b = open_cache(LRUCache(3))
    for key in "xyz":
        put(b, key)
    read(a, "x")
    put(a, "y")  # A's insert writes its use of x first
    put(b, "w")  # evicts the least recently used: z
    assert held(b) == {"x", "y", "w"}


def test_two_openers_share_one_bound(open_cache: Callable[..., CachedStore]) -> None:
    caches = [open_cache(FIFOCache(4)) for _ in range(3)]
    rng = random.Random(7)
    for step in range(120):
        cached = rng.choice(caches)
        put(cached, f"k{rng.randrange(15)}", f"{step}".encode())
        assert len(held(cached)) <= 4


def test_eviction_leaves_the_remote_whole(
    open_cache: Callable[..., CachedStore], redis_server: RedisServer
) -> None:
    from cached_stores_factory_redis import RedisStore

    remote = RedisStore(redis_server.host, redis_server.port, prefix=f"policies-{uuid.uuid4()}:")
    cached = open_cache(LRUCache(5, max_bytes=2000), remote)
    written: dict[str, bytes] = {}
    rng = random.Random(3)
    for step in range(300):
        key = f"obj/{rng.randrange(40)}"
        if rng.random() < 0.5 or key not in written:
            written[key] = bytes([step % 256]) * rng.randrange(1, 600)
            put(cached, key, written[key])
        else:
            assert read(cached, key) == written[key]
    stats = cached.stats()
    assert stats["evictions"] > 100
    assert {key: remote.get(key) for key in list(remote.keys())} == written
    assert len(held(cached)) <= 5
    assert sum(cached.local.stat(key).size for key in held(cached)) <= 2000
    remote.clear()
    remote.close()


def test_an_object_over_max_bytes_is_served_but_not_kept(
    open_cache: Callable[..., CachedStore],
) -> None:
    remote = MemoryStore()
    remote.put("big", b"B" * 101)
    remote.put("small", b"s" * 100)
    cached = open_cache(FIFOCache(3, max_bytes=100), remote)
    for _ in range(3):
        assert read(cached, "big") == b"B" * 101
        assert read(cached, "small") == b"s" * 100
    assert cached.stats()["remote_reads"] == 3 + 1  # big every time, small once
    assert held(cached) == {"small"}
    put(cached, "big", b"b" * 500)  # a write too large drops any local copy
    assert held(cached) == {"small"}
    assert remote.get("big") == b"b" * 500


def test_the_ledger_adopts_entries_stored_behind_its_back(
    open_cache: Callable[..., CachedStore], tmp_path: Path
) -> None:
    first = open_cache(FIFOCache(3))
    put(first, "tracked")
    first.close()
    local = TempfileStore("local", root=tmp_path / "local", fsync=False)
    for key in ["first", "second", "third"]:
        local.put(key, b"untracked")
        time.sleep(0.01)  # distinct mtimes
    local.delete("tracked")  # the tracked entry vanishes behind the ledger's back
    second = open_cache(FIFOCache(3))
    put(second, "mine")
    # bind() re-read the directory: four entries, bound three, the oldest stored goes.
    assert held(second) == {"second", "third", "mine"}
    with closing(sqlite3.connect(local.state_dir() / "fifo.sqlite3")) as db:
        rows = {key for (key,) in db.execute("SELECT key FROM entries")}
    assert rows == {"second", "third", "mine"}


def test_a_lost_ledger_is_rebuilt_from_stored_times(
    open_cache: Callable[..., CachedStore], tmp_path: Path
) -> None:
    first = open_cache(LRUCache(3))
    for key in "abc":
        put(first, key)
        time.sleep(0.01)  # distinct mtimes: the rebuilt order is the stored order
    first.close()
    for path in (tmp_path / "local" / "state").iterdir():
        path.unlink()
    second = open_cache(LRUCache(3))
    put(second, "d")
    assert held(second) == {"b", "c", "d"}


def test_a_busy_ledger_drops_the_new_copy_and_still_serves(
    open_cache: Callable[..., CachedStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_ledger, "BUSY_TIMEOUT_SECONDS", 0.05)
    remote = MemoryStore()
    remote.put("k", b"value")
    cached = open_cache(FIFOCache(3), remote)
    with closing(sqlite3.connect(tmp_path / "local" / "state" / "fifo.sqlite3")) as other:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        assert read(cached, "k") == b"value"
        assert held(cached) == set()  # not kept: it could not be counted against the bound
        other.execute("ROLLBACK")
    assert read(cached, "k") == b"value"
    assert held(cached) == {"k"}


def test_ttl_ages_last_across_restarts(open_cache: Callable[..., CachedStore]) -> None:
    first = open_cache(TTLCache(interval=60.0))
    put(first, "a", b"v1")
    first.remote.put("a", b"v2")  # changed at the origin behind the cache
    assert read(first, "a") == b"v1"  # still fresh
    first.close()
    second = open_cache(TTLCache(interval=60.0))
    assert read(second, "a") == b"v1"  # a restart does not reset the age...
    age_tempfile_store(second.local, 61.0)  # type: ignore[arg-type]
    assert read(second, "a") == b"v2"  # ...and once stale it is fetched and stored again
    assert read(second, "a") == b"v2"
    assert second.stats()["remote_reads"] == 1


def test_purge_removes_every_stale_copy(open_cache: Callable[..., CachedStore]) -> None:
    cached = open_cache(LRUCache(10, ttl=60.0))
    for key in "abc":
        put(cached, key)
    age_tempfile_store(cached.local, 61.0)  # type: ignore[arg-type]
    put(cached, "d")
    assert cached.purge() == 3
    assert held(cached) == {"d"}
    assert sorted(cached.remote.keys()) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("policy", [LRUCache, FIFOCache])
def test_an_unusable_state_directory_falls_back_to_a_ledger_in_the_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, policy: type[LRUCache] | type[FIFOCache]
) -> None:
    local = TempfileStore("local", root=tmp_path / "local")
    name = policy(3).name
    (local.state_dir() / f"{name}.sqlite3").mkdir()  # not a database
    remote = MemoryStore()
    cached = CachedStoreFactory(local, remote, policy(3)).build()
    warnings = [r for r in caplog.records if "cannot open the" in r.getMessage()]
    assert len(warnings) == 1
    assert f"{name}.sqlite3" in warnings[0].getMessage()
    for key in "abcde":
        cached.put(key, key.encode())
    assert len(list(local.keys())) == 3  # the bound still holds
    assert sorted(remote.keys()) == list("abcde")


def test_a_read_only_state_directory_still_builds(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "2m") as mount:
        TempfileStore("local", root=mount).close()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        local = TempfileStore("local", root=mount)
        cached = CachedStoreFactory(local, MemoryStore(), LRUCache(3)).build()
        assert "k" not in cached


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_ledger_and_lock_files_are_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        local = TempfileStore("local", root=tmp_path / "local")
        cached = CachedStoreFactory(local, MemoryStore(), LRUCache(3)).build()
        cached.put("k", b"v")
        cached.close()
    finally:
        os.umask(old)
    files = sorted(local.state_dir().iterdir())
    assert {p.name for p in files} >= {"lru.sqlite3", "lru.sqlite3.lock"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_reads_never_fail_under_churn_and_each_miss_fetches_once() -> None:
    """8 threads, 12 keys, LRU depth 3, 70% reads: evictions race every miss."""
    remote = MemoryStore()
    for index in range(12):
        remote.put(f"k{index}", f"v{index}".encode())
    cached = CachedStoreFactory(MemoryStore(), remote, LRUCache(depth=3)).build()
    failures: list[BaseException] = []
    per_thread = 2_600  # 8 x 2,600 = 20,800 operations

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(per_thread):
            key = f"k{rng.randrange(12)}"
            try:
                if rng.random() < 0.7:
                    value = cached.get(key)
                    assert value.startswith(b"v"), value
                else:
                    cached.put(key, f"v{rng.randrange(1000)}".encode())
            except BaseException as exc:
                failures.append(exc)
                return

    threads = [threading.Thread(target=churn, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = cached.stats()
    assert failures == []
    assert stats["hits"] + stats["misses"] >= 0.6 * 8 * per_thread
    assert stats["remote_reads"] <= stats["misses"]
    assert len(list(cached.local.keys())) <= 3


@pytest.mark.parametrize("policy", [TTLCache(interval=10.0), LRUCache(depth=5, ttl=10.0)])
def test_ttl_expires_over_a_store_that_cannot_say_when_it_stored(policy: CachePolicy) -> None:
    now = [time.time()]  # the default put_stream stamps the real clock
    policy.clock = lambda: now[0]  # type: ignore[method-assign]
    remote = MemoryStore()
    remote.put("k", b"v1")
    local = DictStore()  # the four required methods only: no stored times
    cached = CachedStoreFactory(local, remote, policy).build()
    assert cached.get("k") == b"v1"
    remote.put("k", b"v2")
    now[0] += 5
    assert cached.get("k") == b"v1"  # fresh: the engine knows when it stored it
    assert cached.stats()["hits"] == 1
    now[0] += 6
    assert cached.get("k") == b"v2"  # expired, although the store stamps nothing
    assert cached.stats()["remote_reads"] == 2
    # A fresh engine (a restart) can't know the entry's age: it is expired, never "now".
    restarted = CachedStoreFactory(local, remote, type(policy)(**_args(policy))).build()
    remote.put("k", b"v3")
    assert restarted.get("k") == b"v3"


def _args(policy: CachePolicy) -> dict[str, Any]:
    if isinstance(policy, TTLCache):
        return {"interval": policy.interval}
    assert isinstance(policy, LRUCache)
    return {"depth": policy.depth, "ttl": policy.ttl}


def test_a_corrupt_entry_does_not_stop_an_in_process_ledger_from_building(tmp_path: Path) -> None:
    local = TempfileStore("local", root=tmp_path / "local")
    local.put("whole", b"v" * 100)
    local.put("cut", b"v" * 100)
    cut = local.root / "objects" / _entry_name("cut")
    os.truncate(cut, 10)
    (local.state_dir() / "lru.sqlite3").mkdir()  # no lasting ledger: rebuilt from the store
    cached = CachedStoreFactory(local, MemoryStore(), LRUCache(3)).build()
    cached.put("new", b"x")
    assert local.get("whole") == b"v" * 100
