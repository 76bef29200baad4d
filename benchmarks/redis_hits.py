"""Redis hits beside redis-py GET of the same value on the same server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cached_stores_factory import CachedStore, MemoryStore
from cached_stores_factory.testing.servers import RedisServer

from ._harness import KiB, MiB, Row, Sizes, Target, median_times, unavailable
from ._parts import PartMissing, part

LABELS = {4 * KiB: "4 KiB", MiB: "1 MiB"}
TARGET = Target("ratio", "<=", 1.2)
COMMANDS_TARGET = Target("value", "==", 1, "commands")


def _figures() -> list[tuple[str, Target]]:
    return [
        *((f"Redis hit {label} vs redis-py GET", TARGET) for label in LABELS.values()),
        ("Redis hit: server commands per hit", COMMANDS_TARGET),
    ]


def run(sizes: Sizes, redis_server: RedisServer | None, missing: str) -> list[Row]:
    if redis_server is None:
        return [unavailable(figure, target, missing) for figure, target in _figures()]
    try:
        redis_store = part("RedisStore")
    except PartMissing as exc:
        return [unavailable(figure, target, str(exc)) for figure, target in _figures()]
    import redis

    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    cached = CachedStore(redis_store(redis_server.host, redis_server.port), MemoryStore())
    rows = []
    try:
        for size, label in LABELS.items():
            data = bytes(range(256)) * (size // 256)
            key = f"bench/object-{size}.bin"
            cached.put(key, data)
            client.set(f"csf-bench-raw-{size}", data)

            def ours(key: str = key) -> bytes:
                with cached.open(key, "rb") as handle:
                    result: bytes = handle.read()
                    return result

            contenders: dict[str, Callable[[], Any]] = {
                "ours": ours,
                "raw": lambda size=size: client.get(f"csf-bench-raw-{size}"),  # type: ignore[misc]
            }
            if ours() != data or contenders["raw"]() != data:
                raise AssertionError("a Redis read returned other bytes")
            before = cached.stats()["remote_reads"]
            inner = sizes.small_inner if size < MiB else sizes.large_inner
            medians = median_times(
                contenders, rounds=sizes.rounds, inner=inner, warmup=sizes.warmup
            )
            if cached.stats()["remote_reads"] != before:
                raise AssertionError("a timed Redis hit reached the remote store")
            rows.append(
                Row(
                    f"Redis hit {label} vs redis-py GET",
                    TARGET,
                    medians["ours"] * 1e6,
                    medians["raw"] * 1e6,
                    "us/op",
                    "same server, same value size; one connection pool each",
                )
            )
        per_hit, names = _commands_per_hit(client, lambda: cached.open("bench/object-4096.bin"))
        rows.append(
            Row(
                "Redis hit: server commands per hit",
                COMMANDS_TARGET,
                per_hit,
                unit="commands",
                note=f"INFO commandstats over 100 hits: {names}",
            )
        )
    finally:
        cached.close()
        client.close()
    return rows


def _commands_per_hit(client: Any, hit: Callable[[], Any], hits: int = 100) -> tuple[float, str]:
    """Commands the server ran per hit, counted by the server itself (INFO commandstats)."""
    client.config_resetstat()
    for _ in range(hits):
        hit().close()
    stats = client.info("commandstats")
    calls = {
        name.removeprefix("cmdstat_"): value["calls"]
        for name, value in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_config")
    }
    return sum(calls.values()) / hits, ", ".join(f"{n}={c}" for n, c in sorted(calls.items()))
