"""Tempfile hits beside a raw file read, an fsspec simplecache hit and a diskcache get."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import xxhash

from cached_stores_factory import CachedStore, CachePolicy, MemoryStore
from cached_stores_factory.testing.servers import S3Server

from ._harness import (
    REPORT,
    KiB,
    MiB,
    Row,
    Sizes,
    Target,
    median_times,
    unavailable,
)
from ._parts import PartMissing, part
from ._services import S3_CREDENTIALS

# A hit's budget as a multiple of a raw read of the same bytes: with no policy, with a TTL or
# LRU policy (4 KiB), and in a child process that holds nothing else (its earlier target).
RAW_TARGETS = {4 * KiB: 1.0, MiB: 1.3}
FRESH_TARGETS = {4 * KiB: 1.5, MiB: 1.3}
POLICY_TARGET = 1.1
LABELS = {4 * KiB: "4 KiB", MiB: "1 MiB"}
BUCKET = "csf-bench-hits"


def _reader(opener: Callable[[], Any]) -> Callable[[], bytes]:
    def read() -> bytes:
        with opener() as handle:
            data: bytes = handle.read()
            return data

    return read


@contextlib.contextmanager
def _fsspec_reader(
    workdir: Path, key: str, data: bytes, s3: S3Server | None
) -> Iterator[tuple[Callable[[], bytes], str]]:
    """An fsspec simplecache hit of `data`, over s3fs on the benchmark's S3 endpoint if it can.

    s3fs is only the origin: a simplecache hit opens the cached file without asking it.
    Without an S3 endpoint the origin is fsspec's local filesystem, holding the same bytes.
    """
    import fsspec

    cache_dir = workdir / "fsspec-cache"
    origin = "local file (no S3 endpoint)"
    fs = None
    if s3 is not None:
        client = s3.client()
        with contextlib.suppress(Exception):
            client.create_bucket(
                Bucket=BUCKET,
                CreateBucketConfiguration={"LocationConstraint": S3_CREDENTIALS["region_name"]},
            )
        client.put_object(Bucket=BUCKET, Key=key, Body=data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # s3fs 0.4 is old; fsspec says so on every load
                fs = fsspec.filesystem(
                    "simplecache",
                    skip_instance_cache=True,  # a fresh s3fs, no listing cached from a past call
                    target_protocol="s3",
                    target_options={
                        "skip_instance_cache": True,
                        "key": S3_CREDENTIALS["aws_access_key_id"],
                        "secret": S3_CREDENTIALS["aws_secret_access_key"],
                        "client_kwargs": {
                            "endpoint_url": s3.endpoint_url,
                            "region_name": S3_CREDENTIALS["region_name"],
                        },
                    },
                    cache_storage=str(cache_dir / "s3"),
                )
            path = f"{BUCKET}/{key}"
            with fs.open(path, "rb") as handle:  # the miss that fills fsspec's cache
                if handle.read() != data:
                    raise AssertionError("fsspec read other bytes")
            origin = "s3fs on the moto endpoint"
        except Exception as exc:
            fs = None
            origin = f"local file (s3fs failed: {type(exc).__name__})"
    if fs is None:
        source = workdir / "fsspec-origin" / key
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(data)
        fs = fsspec.filesystem(
            "simplecache",
            skip_instance_cache=True,
            target_protocol="file",
            cache_storage=str(cache_dir / "file"),
        )
        path = str(source)
    yield _reader(lambda: fs.open(path, "rb")), origin


def _fresh_process(size: int, sizes: Sizes, inner: int) -> dict[str, dict[str, float]]:
    """A hit and a raw read timed, and their page faults counted, in a fresh small process."""
    arguments = [str(size), str(sizes.rounds), str(inner), str(sizes.warmup)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._faults_child", *arguments],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the fresh-process child failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, dict[str, float]] = json.loads(done.stdout)
    return result


def _verified_read(path: Path, checksum: int) -> bytes:
    """What any verified hit must do at least: one read of the file and one pass of XXH3."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    if xxhash.xxh3_64_intdigest(data) != checksum:
        raise AssertionError("the file changed")
    return data


def _cached_store(tempfile_store: Any, root: Path, policy: CachePolicy | None) -> CachedStore:
    return CachedStore(tempfile_store("bench", root=root), MemoryStore(), policy)


def run(sizes: Sizes, s3: S3Server | None) -> list[Row]:
    rows: list[Row] = []
    for size in (4 * KiB, MiB):
        rows.extend(_run_size(sizes, size, s3))
    return rows


def _figures(size: int) -> list[tuple[str, Target, str, str]]:
    """(figure, target, our contender, baseline contender) for one object size."""
    label = LABELS[size]
    versus_raw = Target("ratio", "<=", RAW_TARGETS[size])
    fresh = Target("ratio", "<=", FRESH_TARGETS[size])
    figures = [
        (f"tempfile hit {label} vs raw open().read()", versus_raw, "ours", "raw"),
        (f"tempfile hit {label} vs raw, in a fresh small process", fresh, "fresh", "raw"),
    ]
    if size == 4 * KiB:
        with_policy = Target("ratio", "<=", POLICY_TARGET)
        figures += [
            (f"tempfile hit {label}, TTL policy, vs raw", with_policy, "ttl", "raw"),
            (f"tempfile hit {label}, LRU policy, vs raw", with_policy, "lru", "raw"),
        ]
    return [
        *figures,
        (f"tempfile hit {label}, default mode open(key).read(), vs raw", REPORT, "default", "raw"),
        (f"os.read + XXH3 check of {label}, no Python layers, vs raw", REPORT, "floor", "raw"),
        (f"tempfile hit {label} vs fsspec simplecache hit", REPORT, "ours", "fsspec"),
        (f"tempfile hit {label} vs diskcache get", REPORT, "ours", "diskcache"),
    ]


def _run_size(sizes: Sizes, size: int, s3: S3Server | None) -> list[Row]:
    figures = _figures(size)
    policy_missing = ""
    try:
        tempfile_store = part("TempfileStore")
    except PartMissing as exc:
        return [unavailable(figure, target, str(exc)) for figure, target, _, _ in figures]
    data = bytes(range(256)) * (size // 256)
    key = f"bench/object-{size}.bin"
    with tempfile.TemporaryDirectory(prefix="csf-bench-hits-") as tmp:
        workdir = Path(tmp)
        raw_path = workdir / "raw" / "object.bin"
        raw_path.parent.mkdir()
        raw_path.write_bytes(data)

        stores = {"ours": _cached_store(tempfile_store, workdir / "ours", None)}
        if size == 4 * KiB:
            try:
                stores["ttl"] = _cached_store(
                    tempfile_store, workdir / "ttl", part("TTLCache")(interval=3600.0)
                )
                stores["lru"] = _cached_store(
                    tempfile_store, workdir / "lru", part("LRUCache")(depth=10_000)
                )
            except PartMissing as exc:
                policy_missing = str(exc)
        for store in stores.values():
            store.put(key, data)

        import diskcache

        disk = diskcache.Cache(str(workdir / "diskcache"))
        disk.set(key, data)
        checksum = xxhash.xxh3_64_intdigest(data)
        with _fsspec_reader(workdir, key, data, s3) as (fsspec_read, origin):
            contenders: dict[str, Callable[[], object]] = {
                "raw": _reader(lambda: raw_path.open("rb")),
                **{
                    name: _reader(lambda store=store: store.open(key, "rb"))  # type: ignore[misc]
                    for name, store in stores.items()
                },
                "default": _reader(lambda: stores["ours"].open(key)),
                "floor": functools.partial(_verified_read, raw_path, checksum),
                "fsspec": fsspec_read,
                "diskcache": lambda: disk.get(key),
            }
            for name, call in contenders.items():
                if call() != data:
                    raise AssertionError(f"{name} read other bytes")
            before = {name: store.stats() for name, store in stores.items()}
            inner = sizes.small_inner if size < MiB else sizes.large_inner
            medians = median_times(
                contenders, rounds=sizes.rounds, inner=inner, warmup=sizes.warmup
            )
        disk.close()
        for name, store in stores.items():
            stats = store.stats()
            if stats["remote_reads"] != before[name]["remote_reads"]:
                raise AssertionError(f"{name}: a timed hit reached the remote store")
            store.close()

    fresh = _fresh_process(size, sizes, inner)
    faults = fresh["faults"]
    notes = {
        "raw": f"raw open().read() = {medians['raw'] * 1e6:.1f} us",
        "fsspec": f"fsspec simplecache over {origin}; "
        f"fsspec/raw = {medians['fsspec'] / medians['raw']:.2f}x",
        "diskcache": f"diskcache/raw = {medians['diskcache'] / medians['raw']:.2f}x",
    }
    details = {
        "ttl": "TTLCache(interval=3600); ",
        "lru": "LRUCache(depth=10000); ",
        "default": 'mode "r+b", as in CS.open(key).read(); ',
        "floor": "os.open, os.fstat, os.read, xxh3_64, os.close of the raw file; ",
    }
    rows = []
    for figure, target, mine, other in figures:
        if mine == "fresh":
            seconds = fresh["seconds"]
            rows.append(
                Row(
                    figure,
                    target,
                    seconds["ours"] * 1e6,
                    seconds["raw"] * 1e6,
                    "us/op",
                    f"both timed in a child that holds only this store and file; minor page "
                    f"faults per call there: ours {faults['ours']:.1f}, raw {faults['raw']:.1f}",
                )
            )
            continue
        if mine not in medians:
            rows.append(unavailable(figure, target, policy_missing))
            continue
        note = details.get(mine, "") + notes[other]
        rows.append(Row(figure, target, medians[mine] * 1e6, medians[other] * 1e6, "us/op", note))
    return rows
