"""fsspec users: a csf:// hit beside fsspec's simplecache hit of the same object."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cached_stores_factory import CachedStore
from cached_stores_factory.testing.servers import S3Server

from ._harness import KiB, Row, Sizes, Target, median_times, unavailable
from ._parts import PartMissing, part
from .hits import BUCKET, _fsspec_reader, _reader
from .s3_rows import s3_store

HIT = "fsspec hit 4 KiB: csf:// vs simplecache::s3"
HIT_TARGET = Target("ratio", "<=", 1.0)


def run(sizes: Sizes, s3: S3Server | None, missing: str) -> list[Row]:
    return run_hit(sizes, s3, missing)


def run_hit(sizes: Sizes, s3: S3Server | None, missing: str) -> list[Row]:
    if s3 is None:
        return [unavailable(HIT, HIT_TARGET, missing)]
    try:
        from cached_stores_factory_fsspec import CachedStoreFileSystem

        tempfile_store = part("TempfileStore")
        remote = s3_store(s3, BUCKET)
    except (PartMissing, ImportError) as exc:
        return [unavailable(HIT, HIT_TARGET, str(exc))]
    data = bytes(range(256)) * (4 * KiB // 256)
    key = "fsspec/object-4k.bin"
    with tempfile.TemporaryDirectory(prefix="csf-bench-fsspec-") as tmp:
        workdir = Path(tmp)
        # The simplecache contender puts the object in the bucket and fills its own cache.
        with _fsspec_reader(workdir, key, data, s3) as (simplecache_read, origin):
            cached = CachedStore(tempfile_store("bench", root=workdir / "ours"), remote)
            fs = CachedStoreFileSystem(store=cached)
            csf_read = _reader(lambda: fs.open(key, "rb"))
            raw_path = workdir / "raw.bin"
            raw_path.write_bytes(data)
            contenders = {
                "csf": csf_read,
                "simplecache": simplecache_read,
                "raw": _reader(lambda: raw_path.open("rb")),
            }
            for name, call in contenders.items():  # the first csf read is the miss
                if call() != data:
                    raise AssertionError(f"{name} read other bytes")
            before = cached.stats()["remote_reads"]
            medians = median_times(
                contenders, rounds=sizes.rounds, inner=sizes.small_inner, warmup=sizes.warmup
            )
            if cached.stats()["remote_reads"] != before:
                raise AssertionError("a timed csf:// hit reached the remote store")
            cached.close()
    return [
        Row(
            HIT,
            HIT_TARGET,
            medians["csf"] * 1e6,
            medians["simplecache"] * 1e6,
            "us/op",
            f"both through fsspec: fs.open(path, 'rb').read(); csf:// over "
            f"CachedStore(TempfileStore, S3Store), simplecache over {origin}; "
            f"csf/raw = {medians['csf'] / medians['raw']:.2f}x, "
            f"simplecache/raw = {medians['simplecache'] / medians['raw']:.2f}x",
        )
    ]
