"""FIFO and LRU with their ledger in Redis: the conformance suite, atomicity, failures."""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cached_stores_factory import CachedStore, CachedStoreFactory, CachePolicy, MemoryStore, Store
from cached_stores_factory.errors import ConfigError
from cached_stores_factory.testing.policies import ManualClock, PolicyConformance
from cached_stores_factory.testing.servers import RedisCluster, RedisServer, free_port
from cached_stores_factory_policies import FIFOCache, LRUCache, _redis_ledger
from cached_stores_factory_redis import RedisStore

pytestmark = pytest.mark.redis


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


def redis_client(server: RedisServer) -> Any:
    import redis

    return redis.Redis(host=server.host, port=server.port)


class TestFIFOWithRedisLedger(PolicyConformance):
    """Any local store (here memory) with the ledger in Redis, named by a URL."""

    max_entries = 5

    @pytest.fixture
    def make_policy(self, redis_server: RedisServer) -> Callable[[], CachePolicy]:
        key = unique("fifo")
        return lambda: FIFOCache(5, max_bytes=400, ledger=redis_server.url, ledger_key=key)


class TestLRUWithRedisLedger(PolicyConformance):
    max_entries = 5

    @pytest.fixture
    def make_policy(self, redis_server: RedisServer) -> Callable[[], CachePolicy]:
        key = unique("lru")
        return lambda: LRUCache(5, ttl=3600.0, ledger=redis_server.url, ledger_key=key)


class TestLRUOnARedisStore(PolicyConformance):
    """A Redis local store: the policy keeps its ledger in the same Redis, by default."""

    max_entries = 5

    @pytest.fixture
    def local_store(self, redis_server: RedisServer) -> Iterator[Store]:
        with RedisStore(redis_server.host, redis_server.port, prefix=unique("local") + ":") as s:
            yield s
            s.clear()

    @pytest.fixture
    def make_policy(self) -> Callable[[], CachePolicy]:
        return lambda: LRUCache(5)


class TestFIFOOnARedisCluster(TestLRUOnARedisStore):
    @pytest.fixture
    def local_store(self, redis_cluster: RedisCluster) -> Iterator[Store]:
        with RedisStore(
            redis_cluster.host, redis_cluster.port, cluster=True, prefix=unique("local") + ":"
        ) as s:
            yield s
            s.clear()

    @pytest.fixture
    def make_policy(self) -> Callable[[], CachePolicy]:
        return lambda: FIFOCache(5, max_bytes=400)


@pytest.fixture
def redis_local(redis_server: RedisServer) -> Iterator[RedisStore]:
    with RedisStore(redis_server.host, redis_server.port, prefix=unique("local") + ":") as store:
        yield store
        store.clear()


def build(local: Store, policy: CachePolicy, remote: Store | None = None) -> CachedStore:
    return CachedStoreFactory(local, remote or MemoryStore(), policy).build()


def put(cached: CachedStore, key: str, data: bytes = b"data") -> None:
    cached.put_stream(key, io.BytesIO(data))


def test_a_redis_local_store_keeps_its_ledger_in_the_same_redis(
    redis_local: RedisStore, redis_server: RedisServer
):
    cached = build(redis_local, FIFOCache(3))
    for key in "abcde":
        put(cached, key)
    assert sorted(redis_local.keys()) == ["c", "d", "e"]
    client = redis_client(redis_server)
    order = f"csf-ledger:{{fifo:redis:{redis_local.prefix}}}:order"
    assert [k.decode() for k in client.zrange(order, 0, -1)] == ["c", "d", "e"]
    assert int(client.hget(order.replace(":order", ":meta"), "bytes")) == 12
    cached.close()
    client.close()


def test_two_openers_share_one_bound_and_one_order(redis_local: RedisStore):
    """Two cached stores over one Redis, as two processes: one FIFO order between them."""
    first, second = build(redis_local, FIFOCache(3)), build(redis_local, FIFOCache(3))
    put(first, "a")
    put(second, "b")
    put(first, "c")
    put(second, "d")  # evicts "a", which the first opener stored
    assert sorted(redis_local.keys()) == ["b", "c", "d"]
    first.close()
    second.close()


def test_lru_uses_from_another_opener_count_once_flushed(
    redis_local: RedisStore, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(_redis_ledger, "FLUSH_SECONDS", 3600.0)  # only explicit flushes
    clock = ManualClock()
    first = build(redis_local, LRUCache(3, clock=clock))
    second = build(redis_local, LRUCache(3, clock=clock))
    for key in "abc":
        put(first, key)
    assert second.get("a") == b"data"  # a hit: buffered in the second opener only
    second.policy.state.flush()  # type: ignore[attr-defined]
    put(first, "d")  # the first opener evicts: "b" is now the least recently used
    assert sorted(redis_local.keys()) == ["a", "c", "d"]
    first.close()
    second.close()


def test_a_hit_adds_no_round_trip_and_the_timer_flushes_the_use(
    redis_local: RedisStore, redis_server: RedisServer
):
    cached = build(redis_local, LRUCache(3))
    for key in "abc":
        put(cached, key)
    redis_server.command("CONFIG", "RESETSTAT")
    with cached.open_read("a") as entry:
        assert entry.read() == b"data"
    stats = redis_server.command("INFO", "commandstats").decode()
    assert "cmdstat_hmget:calls=1," in stats
    assert "evalsha" not in stats and "zadd" not in stats
    deadline = time.monotonic() + 10
    client = redis_client(redis_server)
    order = f"csf-ledger:{{lru:redis:{redis_local.prefix}}}:order"
    while [k.decode() for k in client.zrange(order, 0, -1)] != ["b", "c", "a"]:
        assert time.monotonic() < deadline, "the use was never flushed"
        time.sleep(0.05)
    cached.close()
    client.close()


def test_insert_and_evict_is_atomic_under_threads_of_many_openers(redis_local: RedisStore):
    """Eight openers race inserts: the ledger never counts more than the bound, at any commit."""
    openers = [build(redis_local, FIFOCache(4)) for _ in range(8)]
    errors: list[BaseException] = []

    def worker(cached: CachedStore, seed: int) -> None:
        try:
            for step in range(40):
                put(cached, f"k{(seed * 40 + step) % 23}", b"x" * (step % 5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c, n)) for n, c in enumerate(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(list(redis_local.keys())) <= 4
    for cached in openers:
        cached.close()


def test_bind_adopts_entries_stored_behind_its_back_and_forgets_vanished_ones(
    redis_local: RedisStore,
):
    cached = build(redis_local, FIFOCache(3))
    put(cached, "known")
    redis_local.delete("known")  # gone without the policy hearing of it
    redis_local.put("stray/1", b"1")
    redis_local.put("stray/2", b"2")
    cached.close()
    again = build(redis_local, FIFOCache(3))
    put(again, "new/1")
    put(again, "new/2")  # four entries known now: the oldest stray goes
    assert sorted(redis_local.keys()) == ["new/1", "new/2", "stray/2"]
    again.close()


def test_an_unreachable_ledger_still_builds_and_warns_naming_the_server_never_the_password(
    caplog: pytest.LogCaptureFixture,
):
    port = free_port()
    with caplog.at_level(logging.WARNING):
        cached = build(MemoryStore(), FIFOCache(2, ledger=f"redis://:pw-s3cret@127.0.0.1:{port}/0"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"127.0.0.1:{port}" in message for message in warnings)
    assert not any("pw-s3cret" in message for message in warnings)
    cached.remote.put("k", b"v")
    assert cached.get("k") == b"v"  # served; nothing is cached until the ledger answers


def test_ledger_settings_are_checked():
    with pytest.raises(ValueError, match="redis://, rediss:// or unix://"):
        FIFOCache(2, ledger="http://example.invalid")
    policy = LRUCache(2, ledger="redis://:pw-s3cret@127.0.0.1:1/0")
    assert "pw-s3cret" not in repr(policy)
    with pytest.raises(ValueError, match="ledger_cluster=True needs ledger"):
        FIFOCache(2, ledger_cluster=True)


def test_a_ledger_without_the_redis_plugin_is_a_config_error_naming_its_place(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setitem(sys.modules, "cached_stores_factory_redis", None)  # not installed
    config = {"local": {"store": "memory"}, "remote": {"store": "memory"}}
    policy = {"name": "lru", "depth": 2, "ledger": "redis://127.0.0.1:1/0"}
    with pytest.raises(ConfigError, match=r"\[policy\] policy 'lru': .*\[redis\]"):
        CachedStoreFactory.from_config({**config, "policy": policy})


def test_a_ledger_on_a_cluster_by_url(redis_cluster: RedisCluster):
    local = MemoryStore()
    key = unique("fifo")
    cached = build(
        local, FIFOCache(2, ledger=redis_cluster.url, ledger_cluster=True, ledger_key=key)
    )
    for name in "abc":
        put(cached, name)
    assert sorted(local.keys()) == ["b", "c"]
    cached.close()


def test_a_ledger_that_fails_mid_run_keeps_the_bound(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
):
    from cached_stores_factory.testing.servers import start_redis, stop_process

    process, server = start_redis()
    local = MemoryStore()
    cached = build(local, FIFOCache(2, ledger=server.url, ledger_key=unique("fifo")))
    put(cached, "a")
    stop_process(process)
    with caplog.at_level(logging.WARNING, logger="cached_stores_factory.policies"):
        put(cached, "b")
    assert "b" not in local  # not cached: the bound cannot be checked
    assert cached.remote.get("b") == b"data"  # the write itself went through
    assert "not caching 'b'" in caplog.text
    cached.close()
