"""Many processes: a hit through the Redis ledger, a Redis Cluster hit, requests per miss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cached_stores_factory import CachedStore, CachedStoreFactory, MemoryStore
from cached_stores_factory.testing.servers import (
    RedisServer,
    ServiceUnavailable,
    running_redis_cluster,
)

from ._harness import KiB, Row, Sizes, Target, median_times, unavailable
from ._parts import PartMissing, part

TARGET = Target("ratio", "<=", 1.2)
LEDGER_HIT = "LRU hit 4 KiB, ledger in Redis vs in process"
CLUSTER_HIT = "Redis Cluster hit 4 KiB vs RedisCluster.get"
MISS_COMMANDS = "Redis local miss: Redis commands per miss, with its lease"
MISS_TARGET = Target("report", unit="commands")
DATA = bytes(range(256)) * (4 * KiB // 256)


def _reader(cached: CachedStore, key: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with cached.open(key, "rb") as handle:
            result: bytes = handle.read()
            return result

    return read


def _ledger_hit(sizes: Sizes, redis_server: RedisServer) -> Row:
    """The same memory-store hit under LRU, with its ledger in process and in Redis."""
    lru = part("LRUCache")
    in_process = CachedStoreFactory(MemoryStore(), MemoryStore(), lru(100)).build()
    in_redis = CachedStoreFactory(
        MemoryStore(), MemoryStore(), lru(100, ledger=redis_server.url, ledger_key="bench-lru")
    ).build()
    try:
        for cached in (in_process, in_redis):
            cached.put("bench/ledger.bin", DATA)
        contenders = {
            "ours": _reader(in_redis, "bench/ledger.bin"),
            "raw": _reader(in_process, "bench/ledger.bin"),
        }
        medians = median_times(
            contenders, rounds=sizes.rounds, inner=sizes.small_inner, warmup=sizes.warmup
        )
    finally:
        in_process.close()
        in_redis.close()
    return Row(
        LEDGER_HIT,
        TARGET,
        medians["ours"] * 1e6,
        medians["raw"] * 1e6,
        "us/op",
        "memory local store; LRU uses are buffered and flushed every 0.1 s, off the hit path",
    )


def _cluster_hit(sizes: Sizes) -> Row:
    redis_store = part("RedisStore")
    import redis

    with running_redis_cluster() as cluster:
        client = redis.RedisCluster(host=cluster.host, port=cluster.port)
        cached = CachedStore(
            redis_store(cluster.host, cluster.port, cluster=True, prefix="bench:"), MemoryStore()
        )
        try:
            cached.put("bench/cluster.bin", DATA)
            client.set("bench-raw", DATA)
            contenders: dict[str, Callable[[], Any]] = {
                "ours": _reader(cached, "bench/cluster.bin"),
                "raw": lambda: client.get("bench-raw"),
            }
            if contenders["ours"]() != DATA or contenders["raw"]() != DATA:
                raise AssertionError("a Redis Cluster read returned other bytes")
            medians = median_times(
                contenders, rounds=sizes.rounds, inner=sizes.small_inner, warmup=sizes.warmup
            )
        finally:
            cached.close()
            client.close()
    return Row(
        CLUSTER_HIT,
        TARGET,
        medians["ours"] * 1e6,
        medians["raw"] * 1e6,
        "us/op",
        "3-node cluster on loopback; both clients know the slot map, so one round trip each",
    )


def _miss_commands(redis_server: RedisServer) -> Row:
    """Redis commands one miss costs with a Redis local store (its lease included)."""
    redis_store = part("RedisStore")
    import redis

    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    remote = MemoryStore()
    misses = 20
    for n in range(misses):
        remote.put(f"bench/miss-{n}.bin", DATA)
    cached = CachedStore(
        redis_store(redis_server.host, redis_server.port, prefix="bench-miss:"), remote
    )
    try:
        client.config_resetstat()
        for n in range(misses):
            with cached.open(f"bench/miss-{n}.bin", "rb") as handle:
                handle.read()
        stats = client.info("commandstats")
        cached.clear()
    finally:
        cached.close()
        client.close()
    calls = {
        name.removeprefix("cmdstat_"): value["calls"]
        for name, value in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_config")
    }
    return Row(
        MISS_COMMANDS,
        MISS_TARGET,
        sum(calls.values()) / misses,
        unit="commands",
        note="per miss over 20 (commands run inside Lua scripts count too): "
        + ", ".join(f"{n}={c / misses:g}" for n, c in sorted(calls.items())),
    )


def run(sizes: Sizes, redis_server: RedisServer | None, missing: str) -> list[Row]:
    figures = [(LEDGER_HIT, TARGET), (CLUSTER_HIT, TARGET), (MISS_COMMANDS, MISS_TARGET)]
    if redis_server is None:
        return [unavailable(figure, target, missing) for figure, target in figures]
    try:
        rows = [_ledger_hit(sizes, redis_server)]
        try:
            rows.append(_cluster_hit(sizes))
        except ServiceUnavailable as exc:
            rows.append(unavailable(CLUSTER_HIT, TARGET, str(exc)))
        rows.append(_miss_commands(redis_server))
    except PartMissing as exc:
        return [unavailable(figure, target, str(exc)) for figure, target in figures]
    return rows
