"""polars, DuckDB, Dask and xarray/Zarr read through csf:// from moto's S3 server.

Each tool reads twice: the second read must make no request at all (the S3 endpoint counts
them), and every result is compared with the data it was made from.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import dask.dataframe as dd
import duckdb
import fsspec
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xarray as xr

from cached_stores_factory.testing.servers import S3Server

pytestmark = pytest.mark.s3


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket("tools")


@pytest.fixture
def config(s3_server: S3Server, bucket: str, tmp_path: Path) -> str:
    path = tmp_path / "cache.toml"
    path.write_text(
        f"""
[local]
store = "tempfile"
name = "tools"
root = "{tmp_path / "cache"}"

[remote]
store = "s3"
bucketname = "{bucket}"
s3_region = "eu-central-1"
endpoint_url = "{s3_server.endpoint_url}"
aws_access_key_id = "testing"
aws_secret_access_key = "testing"

[policy]
name = "ttl"
interval = 3600.0
"""
    )
    return str(path)


def parquet_bytes(table: pa.Table, **options: object) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    return bytes(sink.getvalue())


def numbers(rows: int, seed: int = 7) -> pa.Table:
    random = np.random.default_rng(seed)
    return pa.table(
        {"id": np.arange(rows), "v": random.random(rows), "g": random.integers(0, 100, rows)}
    )


def twice(s3_server: S3Server, read: Callable[[], object]) -> tuple[int, int]:
    """Requests made by the first call of `read`, and by the second."""
    counts = []
    for _ in range(2):
        before = s3_server.count()
        read()
        counts.append(s3_server.count() - before)
    return counts[0], counts[1]


def test_polars_by_url_and_by_file_object(s3_server: S3Server, bucket: str, config: str) -> None:
    table = numbers(200_000)  # above 2 MiB: a warm hit streams from the local file
    s3_server.client().put_object(Bucket=bucket, Key="p/x.parquet", Body=parquet_bytes(table))
    s3_server.client().put_object(
        Bucket=bucket, Key="p/x.csv", Body=table.slice(0, 1000).to_pandas().to_csv(index=False)
    )
    expected = pl.from_arrow(table)
    options = {"config": config}

    def by_url() -> None:  # polars reads other schemes through fsspec with use_pyarrow=True
        frame = pl.read_parquet(
            "csf://p/x.parquet", storage_options=options, use_pyarrow=True, columns=["v"]
        )
        assert frame.equals(expected.select("v"))
        csv = pl.read_csv("csf://p/x.csv", storage_options=options, use_pyarrow=True)
        assert csv.equals(expected.head(1000))

    cold, warm = twice(s3_server, by_url)
    assert cold == 4 and warm == 0  # a HEAD and a GET per object, then nothing

    fs = fsspec.filesystem("csf", config=config)

    def by_file_object() -> None:  # the warm hit once failed: "File out of specification"
        with fs.open("p/x.parquet", "rb") as handle:
            assert pl.read_parquet(handle).equals(expected)
        with fs.open("p/x.csv", "rb") as handle:
            assert pl.read_csv(handle).equals(expected.head(1000))

    assert twice(s3_server, by_file_object) == (0, 0)


def test_duckdb_repeated_aggregates_match_a_local_copy(
    s3_server: S3Server, bucket: str, config: str, tmp_path: Path
) -> None:
    body = parquet_bytes(numbers(1_000_000), row_group_size=50_000)  # 20 row groups
    s3_server.client().put_object(Bucket=bucket, Key="d/x.parquet", Body=body)
    before = s3_server.count()
    (tmp_path / "copy.parquet").write_bytes(body)
    connection = duckdb.connect()
    connection.register_filesystem(fsspec.filesystem("csf", config=config))
    # Integer aggregates and a hash of every double are exact whatever the threads' order;
    # a float sum's last digits are not (DuckDB's documented non-determinism), so it is
    # compared within a relative 1e-9.
    query = "SELECT sum(id), count(*), sum(g), sum(hash(v)), sum(v) FROM read_parquet('{}')"
    (*exact, total) = connection.execute(query.format(tmp_path / "copy.parquet")).fetchone()

    def aggregate() -> None:
        (*got, got_total) = connection.execute(query.format("csf://d/x.parquet")).fetchone()
        assert got == exact and got_total == pytest.approx(total, rel=1e-9)

    cold, warm = twice(s3_server, aggregate)
    assert cold > 0 and warm == 0
    for _ in range(40):  # many threads read one file object: each read its own bytes
        aggregate()
    assert s3_server.count() - before == cold


def test_dask_dataframes_in_worker_processes(s3_server: S3Server, bucket: str, config: str) -> None:
    frame = pd.DataFrame({"id": np.arange(9000), "g": np.arange(9000) % 7})
    for part in range(3):
        body = frame.iloc[part * 3000 : (part + 1) * 3000].to_parquet()
        s3_server.client().put_object(Bucket=bucket, Key=f"dd/part{part}.parquet", Body=body)

    def total() -> None:  # each worker process unpickles the filesystem and builds the store
        data = dd.read_parquet("csf://dd/", storage_options={"config": config})
        sums = data.groupby("g")["id"].sum().compute(scheduler="processes", num_workers=2)
        pd.testing.assert_series_equal(sums.sort_index(), frame.groupby("g")["id"].sum())

    cold, warm = twice(s3_server, total)
    assert cold > 0 and warm == 0


def test_xarray_over_zarr_through_get_mapper(s3_server: S3Server, bucket: str, config: str) -> None:
    data = xr.Dataset(
        {"t": (("x", "y"), np.arange(20_000.0).reshape(100, 200))}, coords={"x": np.arange(100)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: consolidated metadata is not in Zarr 3's spec
        data.to_zarr(fsspec.get_mapper("csf://z/ds.zarr", config=config), consolidated=True)
    fs = fsspec.filesystem("csf", config=config)
    fs.store.clear()  # no local copy: the first read fetches
    fs.invalidate_cache()

    def read() -> None:
        mapper = fsspec.get_mapper("csf://z/ds.zarr", config=config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            back = xr.open_zarr(mapper, consolidated=True).load()
        xr.testing.assert_identical(back, data)

    cold, warm = twice(s3_server, read)
    assert cold > 0 and warm == 0  # the keys Zarr probes and finds missing: asked once
