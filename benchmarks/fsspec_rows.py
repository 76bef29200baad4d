"""fsspec users: a csf:// hit beside simplecache's, and a cold column read beside s3fs's."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cached_stores_factory import CachedStore
from cached_stores_factory.testing.servers import S3Server

from ._harness import KiB, MiB, Row, Sizes, Target, median_times, unavailable
from ._parts import PartMissing, part
from ._services import S3_CREDENTIALS
from .hits import BUCKET, _fsspec_reader, _reader
from .s3_rows import create_bucket, s3_store

HIT = "fsspec hit 4 KiB: csf:// vs simplecache::s3"
HIT_TARGET = Target("ratio", "<=", 1.0)
COLUMN = "cold column read, 1 of 8 columns of a 64 MiB Parquet file: bytes fetched vs s3fs"
COLUMN_ROWS = 1 << 20  # eight float64 columns of 8 MiB each, stored plain
COLUMN_TARGET = Target("value", "<=", 32, "MiB")  # half the file


def run(sizes: Sizes, s3: S3Server | None, missing: str) -> list[Row]:
    return [*run_hit(sizes, s3, missing), *run_column(s3, missing)]


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


def run_column(s3: S3Server | None, missing: str) -> list[Row]:
    """pyarrow reads one column of a cold Parquet file through csf:// and through s3fs; the
    S3 endpoint counts the bytes each one fetched."""
    if s3 is None:
        return [unavailable(COLUMN, COLUMN_TARGET, missing)]
    try:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from cached_stores_factory_fsspec import CachedStoreFileSystem

        tempfile_store = part("TempfileStore")
        remote = s3_store(s3, BUCKET)
    except (PartMissing, ImportError) as exc:
        return [unavailable(COLUMN, COLUMN_TARGET, str(exc))]
    random = np.random.default_rng(0)
    table = pa.table({f"c{i}": random.random(COLUMN_ROWS) for i in range(8)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=None, use_dictionary=False)
    body = bytes(sink.getvalue())
    key = "fsspec/columns.parquet"
    create_bucket(s3, BUCKET).put_object(Bucket=BUCKET, Key=key, Body=body)
    path = f"/{BUCKET}/{key}"

    def fetched(read: Callable[[], pa.Table]) -> tuple[float, int]:
        bytes_before, requests_before = s3.bytes_sent("GET", path), s3.count(path_contains=path)
        if not read().equals(table.select(["c3"])):
            raise AssertionError("the column read other values")
        return s3.bytes_sent("GET", path) - bytes_before, s3.count(path_contains=path) - (
            requests_before
        )

    with tempfile.TemporaryDirectory(prefix="csf-bench-columns-") as tmp:
        cached = CachedStore(tempfile_store("bench", root=Path(tmp) / "ours"), remote)
        fs = CachedStoreFileSystem(store=cached)
        ours, our_requests = fetched(lambda: pq.read_table(key, filesystem=fs, columns=["c3"]))
        cached.close()
    s3fs = _s3fs(s3)
    theirs, their_requests = fetched(
        lambda: pq.read_table(f"{BUCKET}/{key}", filesystem=s3fs, columns=["c3"])
    )
    return [
        Row(
            COLUMN,
            COLUMN_TARGET,
            ours / MiB,
            theirs / MiB,
            "MiB",
            f"pyarrow.parquet.read_table(columns=['c3']) of a {len(body) / MiB:.1f} MiB file, "
            f"cold; response bytes counted by the S3 endpoint; requests: csf:// "
            f"{our_requests}, s3fs {their_requests}",
        )
    ]


def _s3fs(s3: S3Server) -> Any:
    import fsspec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # s3fs 0.4 is old; fsspec says so on every load
        return fsspec.filesystem(
            "s3",
            skip_instance_cache=True,
            key=S3_CREDENTIALS["aws_access_key_id"],
            secret=S3_CREDENTIALS["aws_secret_access_key"],
            client_kwargs={
                "endpoint_url": s3.endpoint_url,
                "region_name": S3_CREDENTIALS["region_name"],
            },
        )
