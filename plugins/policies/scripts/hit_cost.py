"""Hit cost of the policies with 10**3 and 10**6 entries (issue 5, item 9).

    .venv/bin/python plugins/policies/scripts/hit_cost.py [--large 1000000]

Measures, per hit, (1) the policy's own hit path (`is_fresh` + `on_hit`) with the in-memory
ledger and with the SQLite ledger, and (2) a whole engine hit over a MemoryStore.  Keys are
drawn at random from the population, so a large population also pays its cache misses.
(3) compares a tempfile-store hit with a raw 4 KiB `open().read()`, the DESIGN's budget.
Prints the best per-hit times and the large/small ratios.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cached_stores_factory import CachedStoreFactory, CachePolicy, EntryStat, MemoryStore
from cached_stores_factory_policies import FIFOCache, LRUCache
from cached_stores_factory_tempfile import TempfileStore

SAMPLES = 20_000
REPEATS = 9


class StateDirMemoryStore(MemoryStore):
    """A memory store with a state directory, so the policy uses its SQLite ledger."""

    def __init__(self, state: Path) -> None:
        super().__init__()
        self._state = state

    def state_dir(self) -> Path:
        return self._state


def per_call_ns(run: Callable[[list[str]], None], keys: list[str]) -> float:
    """The best of several runs of `run(keys)`, per key: the least disturbed by other load."""
    results = []
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        run(keys)
        results.append((time.perf_counter_ns() - start) / len(keys))
    return min(results)


def populate(store: MemoryStore, count: int) -> list[str]:
    keys = [f"dir{i % 1000}/entry{i}" for i in range(count)]
    for key in keys:
        store.put(key, b"x" * 64)
    return keys


def policy_hit_ns(policy: CachePolicy, keys: list[str], stat: EntryStat) -> float:
    is_fresh, on_hit = policy.is_fresh, policy.on_hit

    def run(sample: list[str]) -> None:
        for key in sample:
            if is_fresh(key, stat):
                on_hit(key, stat)

    return per_call_ns(run, random.Random(1).choices(keys, k=SAMPLES))


def engine_hit_ns(store: MemoryStore, policy: CachePolicy, keys: list[str]) -> float:
    cached = CachedStoreFactory(store, MemoryStore(), policy).build()

    def run(sample: list[str]) -> None:
        for key in sample:
            with cached.open_read(key) as entry:
                entry.read()

    result = per_call_ns(run, random.Random(2).choices(keys, k=SAMPLES))
    assert cached.stats()["remote_reads"] == 0
    policy.close()
    return result


def measure_size(count: int, workdir: Path) -> dict[str, float]:
    print(f"populating {count:,} entries...", flush=True)
    store = MemoryStore()
    keys = populate(store, count)
    stat = store.stat(keys[0])
    rows: dict[str, float] = {}
    for cls in (LRUCache, FIFOCache):
        name = cls.name
        memory_policy = cls(count)
        memory_policy.bind(store)
        rows[f"{name} hooks, memory ledger"] = policy_hit_ns(memory_policy, keys, stat)
        memory_policy.close()
        stateful = StateDirMemoryStore(workdir / f"{name}-{count}")
        stateful._entries = store._entries  # the same entries, without writing them again
        sqlite_policy = cls(count)
        started = time.perf_counter()
        sqlite_policy.bind(stateful)
        print(f"  {name}: SQLite ledger built in {time.perf_counter() - started:.1f} s", flush=True)
        rows[f"{name} hooks, SQLite ledger"] = policy_hit_ns(sqlite_policy, keys, stat)
        sqlite_policy.close()
        rows[f"{name} engine hit, memory store"] = engine_hit_ns(store, cls(count), keys)
    return rows


def tempfile_vs_raw(workdir: Path) -> dict[str, float]:
    store = TempfileStore("bench", root=workdir / "tempfile", fsync=False)
    raw = workdir / "raw"
    raw.mkdir()
    data = os.urandom(4096)
    keys = [f"k{i}" for i in range(1000)]
    for key in keys:
        store.put_stream(key, io.BytesIO(data))
        (raw / key).write_bytes(data)
    rows = {}

    def raw_read(sample: list[str]) -> None:
        for key in sample:
            with open(raw / key, "rb") as handle:
                handle.read()

    sample = random.Random(3).choices(keys, k=SAMPLES // 4)
    rows["raw 4 KiB open().read()"] = per_call_ns(raw_read, sample)
    for cls in (LRUCache, FIFOCache):
        cached = CachedStoreFactory(store, MemoryStore(), cls(2000)).build()

        def hit(sample: list[str], cached: object = cached) -> None:
            for key in sample:
                with cached.open_read(key) as entry:  # type: ignore[attr-defined]
                    entry.read()

        rows[f"{cls.name} engine hit, tempfile store (SQLite ledger)"] = per_call_ns(hit, sample)
        cached.policy.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="csf-hit-cost-") as workdir:
        small = measure_size(args.small, Path(workdir))
        large = measure_size(args.large, Path(workdir))
        files = tempfile_vs_raw(Path(workdir))
    print(f"\n{'per hit':48} {args.small:>10,} {args.large:>10,}   ratio")
    for row, small_ns in small.items():
        print(f"{row:48} {small_ns:>8.0f}ns {large[row]:>8.0f}ns   {large[row] / small_ns:.2f}x")
    base = files.pop("raw 4 KiB open().read()")
    print(f"\n{'raw 4 KiB open().read()':48} {base / 1000:>8.1f}us")
    for row, ns in files.items():
        print(f"{row:48} {ns / 1000:>8.1f}us   {ns / base:.2f}x raw")


if __name__ == "__main__":
    main()
