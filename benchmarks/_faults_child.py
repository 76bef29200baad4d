"""Run in a fresh process by hits.py: a tempfile hit beside a raw read, timed and faults counted.

Usage: python -m benchmarks._faults_child SIZE ROUNDS INNER WARMUP.  A fresh, small process
shows what a user's script sees: the benchmark process's own heap can hide an allocation
pattern that makes every call fault its result's pages in again.  Prints one JSON object:
median seconds per call and minor page faults per call, for "ours" and "raw".
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from cached_stores_factory import CachedStore, MemoryStore

from ._harness import faults_per_call, median_times
from ._parts import part


def main(size: int, rounds: int, inner: int, warmup: int) -> dict[str, dict[str, float]]:
    data = b"x" * size
    with tempfile.TemporaryDirectory(prefix="csf-bench-faults-") as tmp:
        root = Path(tmp)
        cached = CachedStore(part("TempfileStore")("bench", root=root / "ours"), MemoryStore())
        cached.put("bench/object.bin", data)
        raw = root / "raw.bin"
        raw.write_bytes(data)

        def ours() -> bytes:
            with cached.open("bench/object.bin", "rb") as handle:
                result: bytes = handle.read()
                return result

        def plain() -> bytes:
            with raw.open("rb") as handle:
                return handle.read()

        contenders = {"ours": ours, "raw": plain}
        medians = median_times(contenders, rounds=rounds, inner=inner, warmup=warmup)
        faults = {name: faults_per_call(call) for name, call in contenders.items()}
        cached.close()
    return {"seconds": medians, "faults": faults}


if __name__ == "__main__":
    print(json.dumps(main(*(int(arg) for arg in sys.argv[1:5]))))
