"""LRU and FIFO hits with a memory local store at 10**6 entries beside the same at 10**3."""

from __future__ import annotations

import io
import itertools
import random
from collections.abc import Callable
from typing import Any

from cached_stores_factory import CachedStore, CachePolicy, MemoryStore

from ._harness import Row, Sizes, Target, median_times, unavailable
from ._parts import PartMissing, part

TARGET = Target("ratio", "<=", 1.3)
VALUE = b"v" * 64
SAMPLE = 4096  # keys read per contender, in a fixed random order


def _filled(policy: CachePolicy | None, entries: int) -> CachedStore:
    """A cached store whose local memory store and policy hold `entries` keys.

    Entries go in through the same hooks the engine calls after a fetch (put_stream, then
    on_insert), without a remote round trip for each of a million keys.
    """
    local = MemoryStore()
    cached = CachedStore(local, MemoryStore(), policy)
    for index in range(entries):
        key = f"entries/{index:07d}"
        stat = local.put_stream(key, io.BytesIO(VALUE))
        if cached.policy.on_insert(key, stat):
            raise AssertionError(f"{cached.policy!r} evicted below its depth")
    return cached


def _hits(cached: CachedStore, entries: int, seed: int) -> Callable[[], Any]:
    picks = random.Random(seed)
    keys = itertools.cycle([f"entries/{picks.randrange(entries):07d}" for _ in range(SAMPLE)])

    def hit() -> bytes:
        with cached.open(next(keys), "rb") as handle:
            data: bytes = handle.read()
            return data

    return hit


def _count(entries: int) -> str:
    power = len(str(entries)) - 1
    return f"10^{power}" if entries == 10**power else f"{entries:,}"


def run(sizes: Sizes) -> list[Row]:
    big, small = sizes.policy_big, sizes.policy_small
    names = {"LRUCache": "LRU", "FIFOCache": "FIFO"}
    figures = [
        f"{short} hit at {_count(big)} entries vs {_count(small)}" for short in names.values()
    ]
    try:
        classes = {short: part(name) for name, short in names.items()}
    except PartMissing as exc:
        return [unavailable(figure, TARGET, str(exc)) for figure in figures]
    stores: dict[str, CachedStore] = {}
    contenders: dict[str, Callable[[], Any]] = {}
    for short, cls in [*classes.items(), ("none", None)]:
        for label, entries in (("big", big), ("small", small)):
            cached = _filled(cls(depth=entries) if cls else None, entries)
            stores[f"{short}-{label}"] = cached
            contenders[f"{short}-{label}"] = _hits(cached, entries, seed=len(contenders))
    for name, hit in contenders.items():
        if hit() != VALUE:
            raise AssertionError(f"{name} read other bytes")
    medians = median_times(
        contenders, rounds=sizes.rounds, inner=sizes.small_inner, warmup=sizes.warmup
    )
    for name, cached in stores.items():
        if cached.stats()["remote_reads"]:
            raise AssertionError(f"{name}: a hit reached the remote store")
        cached.close()
    no_policy = medians["none-big"] / medians["none-small"]
    return [
        Row(
            figure,
            TARGET,
            medians[f"{short}-big"] * 1e6,
            medians[f"{short}-small"] * 1e6,
            "us/op",
            f"random keys, open().read() of 64 B; with no policy the same sizes give "
            f"{no_policy:.2f}x (the dict lookups alone)",
        )
        for short, figure in zip(names.values(), figures, strict=True)
    ]
