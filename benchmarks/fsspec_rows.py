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
    return [*run_hit(sizes, s3, missing), *run_column(s3, missing), *run_tools(sizes, s3, missing)]


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


TOOLS_TARGET = Target("report")
TOOL_ROWS = 400_000  # four float64 columns: 15 MiB of Parquet, read whole below 16 MiB
TOOL_KEY = "fsspec-tools/x.parquet"
ZARR_KEY = "fsspec-tools/ds.zarr"


def run_tools(sizes: Sizes, s3: S3Server | None, missing: str) -> list[Row]:
    """Each data tool reads one column (xarray a Zarr array) twice through csf://, s3fs,
    simplecache::s3 and blockcache::s3; the S3 endpoint counts bytes and requests."""
    names = ["pandas", "pyarrow", "polars", "DuckDB", "Dask", "xarray/Zarr"]
    figures = [f"{name} via fsspec: cold MiB fetched, csf:// vs s3fs" for name in names]
    if s3 is None:
        return [unavailable(figure, TOOLS_TARGET, missing) for figure in figures]
    try:
        import fsspec
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from cached_stores_factory_fsspec import CachedStoreFileSystem

        tempfile_store = part("TempfileStore")
        remote = s3_store(s3, BUCKET)
    except (PartMissing, ImportError) as exc:
        return [unavailable(figure, TOOLS_TARGET, str(exc)) for figure in figures]
    rows = TOOL_ROWS // 8 if sizes.quick else TOOL_ROWS
    random = np.random.default_rng(1)
    table = pa.table({f"c{i}": random.random(rows) for i in range(4)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=None, row_group_size=rows // 4)
    create_bucket(s3, BUCKET).put_object(Bucket=BUCKET, Key=TOOL_KEY, Body=bytes(sink.getvalue()))
    expected = float(np.sum(table.column("c1").to_numpy()))
    result = []
    with tempfile.TemporaryDirectory(prefix="csf-bench-tools-") as tmp:
        writer = CachedStore(tempfile_store("write", root=Path(tmp) / "write"), remote)
        _write_zarr(CachedStoreFileSystem(store=writer), table.column("c1").to_numpy())
        writer.close()
        for name, figure in zip(names, figures, strict=True):
            # Every tool starts cold: new caches for each contender.
            contenders = _contenders(s3, Path(tmp) / str(len(result)))
            counts = {}
            for contender, (prefix, options) in contenders.items():
                try:
                    counts[contender] = _cold_and_warm(s3, _TOOLS[name], prefix, options, expected)
                except Exception as exc:  # an old s3fs lacks what a tool asks for
                    counts[contender] = (None, f"n/a ({type(exc).__name__})")
            fsspec.filesystem("csf", **contenders["csf"][1]).store.close()
            result.append(_tool_row(figure, counts))
    return result


def _contenders(s3: S3Server, tmp: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each contender's URL prefix and storage options, with caches of its own under `tmp`.

    csf:// is built from a config, as a user's storage options give it (Dask tokenizes them).
    """
    s3fs = {
        "key": S3_CREDENTIALS["aws_access_key_id"],
        "secret": S3_CREDENTIALS["aws_secret_access_key"],
        "client_kwargs": {"endpoint_url": s3.endpoint_url, "region_name": "eu-central-1"},
        "skip_instance_cache": True,
    }
    remote = {"store": "s3", "bucketname": BUCKET, "endpoint_url": s3.endpoint_url}
    remote.update({"s3_region": S3_CREDENTIALS["region_name"]})
    remote.update({k: S3_CREDENTIALS[k] for k in ("aws_access_key_id", "aws_secret_access_key")})
    config = {"local": {"store": "tempfile", "name": "bench", "root": str(tmp / "ours")}}
    return {
        "csf": ("csf://", {"config": {**config, "remote": remote}}),
        "s3fs": (f"s3://{BUCKET}/", s3fs),
        "simplecache": (
            f"simplecache::s3://{BUCKET}/",
            {"s3": s3fs, "simplecache": {"cache_storage": str(tmp / "simple")}},
        ),
        "blockcache": (
            f"blockcache::s3://{BUCKET}/",
            {"s3": s3fs, "blockcache": {"cache_storage": str(tmp / "block")}},
        ),
    }


def _cold_and_warm(
    s3: S3Server,
    read: Callable[[str, dict[str, Any]], float],
    prefix: str,
    options: dict[str, Any],
    expected: float,
) -> tuple[Any, str]:
    """MiB fetched by the first read, and 'cold/warm' requests of the first and second."""
    counts = []
    for _ in range(2):
        bytes_before, requests_before = s3.bytes_sent(), s3.count()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # s3fs 0.4 is old; zarr warns of its format
            if abs(read(prefix, options) - expected) > 1e-6 * abs(expected):
                raise AssertionError("the tool read other values")
        counts.append((s3.bytes_sent() - bytes_before, s3.count() - requests_before))
    return counts[0][0] / MiB, f"{counts[0][1]}/{counts[1][1]}"


def _tool_row(figure: str, counts: dict[str, tuple[Any, str]]) -> Row:
    requests = "; ".join(f"{name} {cold_warm}" for name, (_, cold_warm) in counts.items())
    return Row(
        figure,
        TOOLS_TARGET,
        counts["csf"][0],
        counts["s3fs"][0],
        "MiB",
        f"requests cold/warm: {requests}",
    )


def _write_zarr(fs: Any, values: Any) -> None:
    """The Parquet file's column c1 as a Zarr array in four chunks, written through `fs`."""
    import xarray as xr

    data = xr.Dataset({"c1": (("x",), values)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data.chunk({"x": len(values) // 4}).to_zarr(fs.get_mapper(ZARR_KEY), mode="w")


def _pandas(prefix: str, options: dict[str, Any]) -> float:
    import pandas as pd

    frame = pd.read_parquet(prefix + TOOL_KEY, columns=["c1"], storage_options=options)
    return float(frame["c1"].sum())


def _pyarrow(prefix: str, options: dict[str, Any]) -> float:
    import fsspec
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    fs, path = fsspec.core.url_to_fs(prefix + TOOL_KEY, **options)
    return float(pc.sum(pq.read_table(path, filesystem=fs, columns=["c1"])["c1"]).as_py())


def _polars(prefix: str, options: dict[str, Any]) -> float:
    import polars as pl

    frame = pl.read_parquet(
        prefix + TOOL_KEY, columns=["c1"], storage_options=options, use_pyarrow=True
    )
    return float(frame["c1"].sum())


def _duckdb(prefix: str, options: dict[str, Any]) -> float:
    import duckdb
    import fsspec

    fs, path = fsspec.core.url_to_fs(prefix + TOOL_KEY, **options)
    connection = duckdb.connect()
    connection.register_filesystem(fs)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    query = f"SELECT sum(c1) FROM read_parquet('{protocol}://{path}')"
    return float(connection.execute(query).fetchone()[0])


def _dask(prefix: str, options: dict[str, Any]) -> float:
    import dask.dataframe as dd

    frame = dd.read_parquet(prefix + TOOL_KEY, columns=["c1"], storage_options=options)
    return float(frame["c1"].sum().compute(scheduler="threads"))


def _xarray(prefix: str, options: dict[str, Any]) -> float:
    import fsspec
    import xarray as xr

    mapper = fsspec.get_mapper(prefix + ZARR_KEY, **options)
    return float(xr.open_zarr(mapper)["c1"].sum())


_TOOLS: dict[str, Callable[[str, dict[str, Any]], float]] = {
    "pandas": _pandas,
    "pyarrow": _pyarrow,
    "polars": _polars,
    "DuckDB": _duckdb,
    "Dask": _dask,
    "xarray/Zarr": _xarray,
}
