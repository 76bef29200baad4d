"""The data stack reads through csf:// from moto's S3 server, requests counted by the server.

pandas, pyarrow, polars, DuckDB, Dask and xarray/Zarr.  The cache is built from a TOML file, as
a user writes it, passed as fsspec storage options.  Each tool reads twice where it can: the
second read must make no request at all.
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
from cached_stores_factory_fsspec import CachedStoreFileSystem

pytestmark = pytest.mark.s3


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket("stack")


@pytest.fixture
def config(s3_server: S3Server, bucket: str, tmp_path: Path) -> str:
    path = tmp_path / "cache.toml"
    path.write_text(
        f"""
[local]
store = "tempfile"
name = "stack"
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


def frame(rows: int) -> pd.DataFrame:
    numbers = np.arange(rows)
    return pd.DataFrame(
        {"id": numbers, "value": numbers * 0.5, "label": [f"row {i}" for i in numbers]}
    )


def test_pandas_read_csv_through_csf(s3_server: S3Server, bucket: str, config: str) -> None:
    expected = frame(1000)
    s3_server.client().put_object(
        Bucket=bucket, Key="data/x.csv", Body=expected.to_csv(index=False).encode()
    )
    options = {"config": config}
    first = pd.read_csv("csf://data/x.csv", storage_options=options)
    pd.testing.assert_frame_equal(first, expected)
    assert s3_server.count("GET", f"/{bucket}/data/x.csv") == 1
    before = s3_server.count()
    second = pd.read_csv("csf://data/x.csv", storage_options=options)
    pd.testing.assert_frame_equal(second, expected)
    assert s3_server.count() == before  # the second read: no request at all


def test_pandas_writes_through_csf(s3_server: S3Server, bucket: str, config: str) -> None:
    expected = frame(100)
    expected.to_parquet("csf://out/x.parquet", storage_options={"config": config})
    body = s3_server.client().get_object(Bucket=bucket, Key="out/x.parquet")["Body"].read()
    assert pq.read_table(pa.BufferReader(body)).to_pandas().equals(expected)
    before = s3_server.count()
    back = pd.read_parquet("csf://out/x.parquet", storage_options={"config": config})
    pd.testing.assert_frame_equal(back, expected)
    assert s3_server.count() == before  # write-through left a fresh local copy


def test_pandas_read_parquet_and_pyarrow_read_table_with_columns(
    s3_server: S3Server, bucket: str, config: str
) -> None:
    expected = frame(5000)
    s3_server.client().put_object(
        Bucket=bucket, Key="data/x.parquet", Body=parquet_bytes(pa.Table.from_pandas(expected))
    )
    options = {"config": config}
    first = pd.read_parquet("csf://data/x.parquet", columns=["value"], storage_options=options)
    pd.testing.assert_frame_equal(first, expected[["value"]])
    assert s3_server.count("GET", f"/{bucket}/data/x.parquet") >= 1
    # pandas and pyarrow ask for the file's info three times: one HEAD answers them and open.
    assert s3_server.count("HEAD", f"/{bucket}/data/x.parquet") == 1

    before = s3_server.count()
    again = pd.read_parquet("csf://data/x.parquet", storage_options=options)
    pd.testing.assert_frame_equal(again, expected)
    fs = fsspec.filesystem("csf", config=config)
    table = pq.read_table("csf://data/x.parquet", filesystem=fs, columns=["id", "label"])
    assert table.to_pandas().equals(expected[["id", "label"]])
    assert s3_server.count() == before  # every read after the first: no request at all


def parquet_bytes(table: pa.Table, **options: object) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    return bytes(sink.getvalue())


def test_the_filesystem_wraps_a_store_built_in_code(
    s3_server: S3Server, bucket: str, config: str
) -> None:
    from cached_stores_factory import CachedStoreFactory

    store = CachedStoreFactory.from_config(config).build()
    fs = CachedStoreFileSystem(store=store)
    fs.pipe_file("csf://a/b.txt", b"hello")
    assert s3_server.client().get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"hello"
    assert fs.ls("a", detail=False) == ["a/b.txt"]
    before = s3_server.count()
    assert fs.cat_file("a/b.txt", 1, 3) == b"el"
    assert fs.info("a/b.txt")["size"] == 5
    assert s3_server.count() == before


def test_one_column_of_a_64_mib_parquet_file_fetches_less_than_half_of_it(
    s3_server: S3Server, bucket: str, config: str
) -> None:
    rows = 1 << 20  # eight float64 columns of 8 MiB each, stored plain, in one row group
    random = np.random.default_rng(13)
    table = pa.table({f"c{i}": random.random(rows) for i in range(8)})
    body = parquet_bytes(table, compression=None, use_dictionary=False)
    assert len(body) >= 64 * 1024 * 1024
    s3_server.client().put_object(Bucket=bucket, Key="data/big.parquet", Body=body)
    path = f"/{bucket}/data/big.parquet"
    fetched_before = s3_server.bytes_sent("GET", path)

    fs = fsspec.filesystem("csf", config=config)
    column = pq.read_table("csf://data/big.parquet", filesystem=fs, columns=["c3"])
    assert column.equals(table.select(["c3"]))
    fetched = s3_server.bytes_sent("GET", path) - fetched_before
    assert 0 < fetched < len(body) / 2, f"{fetched} of {len(body)} bytes fetched"

    before = s3_server.count()
    again = pd.read_parquet(
        "csf://data/big.parquet", columns=["c3"], storage_options={"config": config}
    )
    assert again["c3"].equals(table.column("c3").to_pandas())
    assert s3_server.count() == before  # the blocks it read are kept: no request at all


def test_listings_and_missing_keys_are_asked_for_once(
    s3_server: S3Server, bucket: str, config: str
) -> None:
    for name in ("a", "b", "c"):
        s3_server.client().put_object(Bucket=bucket, Key=f"d/{name}.csv", Body=b"x,y\n1,2\n")
    before = {method: s3_server.count(method, f"/{bucket}") for method in ("GET", "HEAD")}

    def requests() -> dict[str, int]:
        return {m: s3_server.count(m, f"/{bucket}") - before[m] for m in ("GET", "HEAD")}

    for _ in range(2):  # cold, then warm: the second pass makes no request at all
        for opened in fsspec.open_files("csf://d/*.csv", "rb", config=config):
            with opened as handle:
                assert handle.read() == b"x,y\n1,2\n"
        # One listing (it gives each file's size and ETag: no HEAD), one GET per file.
        assert requests() == {"GET": 4, "HEAD": 0}
    fs = fsspec.filesystem("csf", config=config)
    for _ in range(3):  # a missing key (a Zarr store's optional metadata): asked once
        with pytest.raises(FileNotFoundError):
            fs.open("z/.zattrs", "rb")
        assert not fs.exists("d/missing.csv")  # the listing of d/ says so: no request
    assert requests() == {"GET": 4, "HEAD": 1}
    assert s3_server.statuses("HEAD", f"/{bucket}/z/.zattrs") == [404]
    fs.pipe_file("z/.zattrs", b"{}")  # a write through the cache: known at once
    assert fs.cat_file("z/.zattrs") == b"{}" and fs.ls("d", detail=False) == [
        "d/a.csv",
        "d/b.csv",
        "d/c.csv",
    ]
    assert requests() == {"GET": 4, "HEAD": 1}


# -- polars, DuckDB, Dask, xarray/Zarr ---------------------------------------------------------


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
