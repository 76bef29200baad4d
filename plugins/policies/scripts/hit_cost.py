"""Hit cost of the policies with 10**3 and 10**6 entries.

    .venv/bin/python plugins/policies/scripts/hit_cost.py [--small 1000] [--large 1000000]

For each policy and ledger, measures per hit (1) the policy's own hit path, `is_fresh` +
`on_hit`, and (2) a whole engine hit over a MemoryStore, with "no policy" as the baseline.
Two access patterns: keys drawn uniformly from all entries (a large population then also
pays CPU-cache misses in every dict it touches, the store's too), and a hot set of 1,000
keys.  Small and large runs alternate and the best of each is kept, so load from other
processes hits both alike.  Last, a tempfile-store hit against a raw 4 KiB `open().read()`,
the hit path's budget.
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

from cached_stores_factory import (
    CachedStore,
    CachedStoreFactory,
    CachePolicy,
    EntryStat,
    MemoryStore,
)
from cached_stores_factory_policies import FIFOCache, LRUCache
from cached_stores_factory_tempfile import TempfileStore

SAMPLES = 20_000
REPEATS = 9

Run = Callable[[], None]


class StateDirMemoryStore(MemoryStore):
    """A memory store with a state directory, so the policy uses its SQLite ledger."""

    def __init__(self, state: Path, entries: MemoryStore) -> None:
        super().__init__()
        self._state = state
        self._entries = entries._entries  # the same entries, without writing them again

    def state_dir(self) -> Path:
        return self._state


def per_hit_ns(run: Run) -> float:
    start = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - start) / SAMPLES


def hooks_run(policy: CachePolicy, sample: list[str], stat: EntryStat) -> Run:
    is_fresh, on_hit = policy.is_fresh, policy.on_hit

    def run() -> None:
        for key in sample:
            if is_fresh(key, stat):
                on_hit(key, stat)

    return run


def engine_run(cached: CachedStore, sample: list[str]) -> Run:
    def run() -> None:
        for key in sample:
            with cached.open_read(key) as entry:
                entry.read()
        assert cached.stats()["remote_reads"] == 0

    return run


def setup(count: int, workdir: Path) -> dict[tuple[str, str], Run]:
    """Every (pattern, row) benchmark over a store of `count` entries, ready to run."""
    print(f"populating {count:,} entries...", flush=True)
    store = MemoryStore()
    keys = [f"dir{i % 1000}/entry{i}" for i in range(count)]
    for key in keys:
        store.put(key, b"x" * 64)
    stat = store.stat(keys[0])
    stateful = StateDirMemoryStore(workdir / f"state-{count}", store)
    rng = random.Random(1)
    hot = rng.sample(keys, min(1000, count))
    patterns = {"uniform": rng.choices(keys, k=SAMPLES), "hot": rng.choices(hot, k=SAMPLES)}
    runs: dict[tuple[str, str], Run] = {}
    policies: list[tuple[str, Callable[[], CachePolicy], bool]] = [
        ("no policy", CachePolicy, False)
    ]
    for cls in (LRUCache, FIFOCache):
        policies += [
            (f"{cls.name}, memory ledger", lambda cls=cls: cls(count), False),
            (f"{cls.name}, SQLite ledger", lambda cls=cls: cls(count), True),
        ]
    for name, make, lasting in policies:
        started = time.perf_counter()
        policy = make()
        policy.bind(stateful if lasting else store)
        # The engine over a plain memory store: it has no state directory.
        engine = None if lasting else CachedStoreFactory(store, MemoryStore(), make()).build()
        print(f"  {name}: bound in {time.perf_counter() - started:.1f} s", flush=True)
        for pattern, sample in patterns.items():
            runs[pattern, f"{name}: is_fresh + on_hit"] = hooks_run(policy, sample, stat)
            if engine is not None:
                runs[pattern, f"{name}: whole engine hit"] = engine_run(engine, sample)
    return runs


def tempfile_vs_raw(workdir: Path) -> dict[str, float]:
    store = TempfileStore("bench", root=workdir / "tempfile", fsync=False)
    raw = workdir / "raw"
    raw.mkdir()
    data = os.urandom(4096)
    keys = [f"k{i}" for i in range(1000)]
    for key in keys:
        store.put_stream(key, io.BytesIO(data))
        (raw / key).write_bytes(data)
    sample = random.Random(3).choices(keys, k=SAMPLES)

    def raw_read() -> None:
        for key in sample:
            with open(raw / key, "rb") as handle:
                handle.read()

    runs: dict[str, Run] = {"raw 4 KiB open().read()": raw_read}
    for cls in (LRUCache, FIFOCache):
        cached = CachedStoreFactory(store, MemoryStore(), cls(2000)).build()

        def hit(cached: object = cached) -> None:
            for key in sample:
                with cached.open_read(key) as entry:  # type: ignore[attr-defined]
                    entry.read()

        runs[f"{cls.name} engine hit, tempfile store (SQLite ledger)"] = hit
    best = {name: min(per_hit_ns(run) for _ in range(REPEATS)) for name, run in runs.items()}
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="csf-hit-cost-") as workdir:
        small = setup(args.small, Path(workdir))
        large = setup(args.large, Path(workdir))
        print(
            f"\n{'per hit, best of ' + str(REPEATS):52} {args.small:>10,} {args.large:>10,}   ratio"
        )
        for row in small:
            small_ns, large_ns = float("inf"), float("inf")
            for _ in range(REPEATS):  # alternate, so other load hits both alike
                small_ns = min(small_ns, per_hit_ns(small[row]))
                large_ns = min(large_ns, per_hit_ns(large[row]))
            label = f"{row[0]:8} {row[1]}"
            print(f"{label:52} {small_ns:>8.0f}ns {large_ns:>8.0f}ns   {large_ns / small_ns:.2f}x")
        files = tempfile_vs_raw(Path(workdir))
    base = files.pop("raw 4 KiB open().read()")
    print(f"\n{'raw 4 KiB open().read()':52} {base / 1000:>8.1f}us")
    for row, ns in files.items():
        print(f"{row:52} {ns / 1000:>8.1f}us   {ns / base:.2f}x raw")


if __name__ == "__main__":
    main()
