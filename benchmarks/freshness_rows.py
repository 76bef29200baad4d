"""What freshness and faults cost: a 304 beside a GET, a hit's checksum, a hung Redis's stall."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from cached_stores_factory.testing.servers import S3Server

from ._harness import REPORT, KiB, MiB, Row, Sizes, Target, median_times, unavailable
from ._parts import PartMissing, part
from .s3_rows import BUCKET, create_bucket, s3_store

REVALIDATE = "revalidation: S3 304 round trip vs a full GET, 1 MiB"
REVALIDATE_BYTES = "revalidation: body bytes per unchanged 1 MiB object"
ZERO_BYTES = Target("value", "==", 0, "bytes")
STALL = {
    "pooled": "outage: one call's stall on a hung Redis (SIGSTOP), pooled connection",
    "fresh": "outage: one call's stall on a hung Redis (SIGSTOP), new connection",
}
STALL_TARGET = Target("value", "<=", 1.2, "s")
CHECKSUM = {
    4 * KiB: "integrity: XXH3 of a 4 KiB hit vs raw",
    MiB: "integrity: XXH3 of a 1 MiB hit vs raw",
}


def run_revalidation(sizes: Sizes, s3: S3Server | None, missing: str) -> list[Row]:
    figures = [(REVALIDATE, REPORT), (REVALIDATE_BYTES, ZERO_BYTES)]
    if s3 is None:
        return [unavailable(figure, target, missing) for figure, target in figures]
    try:
        remote = s3_store(s3)
    except PartMissing as exc:
        return [unavailable(figure, target, str(exc)) for figure, target in figures]
    create_bucket(s3)
    key = "revalidate/object.bin"
    remote.put(key, os.urandom(MiB))
    etag = remote.stat(key).etag
    assert etag is not None

    def conditional() -> object:
        return remote.open_read_if_changed(key, etag)

    def full() -> bytes:
        with remote.open_read(key) as entry:
            return entry.read()

    if conditional() is not None or len(full()) != MiB:
        raise AssertionError("the conditional GET did not answer 304, or the GET was short")
    medians = median_times(
        {"conditional": conditional, "full": full},
        rounds=sizes.remote_rounds,
        inner=1,
        warmup=3,
    )
    before = s3.bytes_sent("GET", key)
    conditional()
    sent = s3.bytes_sent("GET", key) - before
    remote.close()
    return [
        Row(
            REVALIDATE,
            REPORT,
            medians["conditional"] * 1e3,
            medians["full"] * 1e3,
            "ms/op",
            "S3Store.open_read_if_changed (GET with If-None-Match, answered 304) beside "
            "S3Store.open_read + read of the same object; moto in this process, loopback",
        ),
        Row(
            REVALIDATE_BYTES,
            ZERO_BYTES,
            sent,
            unit="bytes",
            note=f"response body bytes moto sent for one 304 ({BUCKET})",
        ),
    ]


def run_checksum(sizes: Sizes) -> list[Row]:
    """The checksum every tempfile hit computes, beside a raw read of the same bytes."""
    import xxhash

    rows = []
    with tempfile.TemporaryDirectory(prefix="csf-bench-integrity-") as tmp:
        for size, figure in CHECKSUM.items():
            path = Path(tmp) / f"raw-{size}"
            data = os.urandom(size)
            path.write_bytes(data)

            def raw(path: Path = path) -> bytes:
                with path.open("rb") as handle:
                    return handle.read()

            def checksum(data: bytes = data) -> int:
                return xxhash.xxh3_64_intdigest(data)

            inner = sizes.small_inner if size < MiB else sizes.large_inner
            medians = median_times(
                {"checksum": checksum, "raw": raw},
                rounds=sizes.rounds,
                inner=inner,
                warmup=sizes.warmup,
            )
            rows.append(
                Row(
                    figure,
                    REPORT,
                    medians["checksum"] * 1e6,
                    medians["raw"] * 1e6,
                    "us/op",
                    "xxhash.xxh3_64 of the entry's bytes (what a hit adds) beside "
                    "open().read() of them; the hit rows above include it",
                )
            )
    return rows


def run_stall(missing: str) -> list[Row]:
    """How long one RedisStore call hangs on a paused server before it raises StoreError."""
    from cached_stores_factory.errors import StoreError
    from cached_stores_factory.testing.faults import controlled_redis
    from cached_stores_factory.testing.servers import ServiceUnavailable

    stalls: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        try:
            redis_store = part("RedisStore")
            redis = stack.enter_context(controlled_redis())
        except (PartMissing, ServiceUnavailable) as exc:
            return [
                unavailable(figure, STALL_TARGET, str(exc) or missing) for figure in STALL.values()
            ]
        pooled = redis_store(redis.server.host, redis.server.port, prefix="bench-stall:")
        pooled.put("k", b"v")  # its pool now holds a live connection
        fresh = redis_store(redis.server.host, redis.server.port, prefix="bench-stall:")
        redis.pause()
        for name, store in (("pooled", pooled), ("fresh", fresh)):
            start = time.perf_counter()
            try:
                store.get("k")
            except StoreError:
                stalls[name] = time.perf_counter() - start
            else:
                raise AssertionError("a paused Redis answered")
        redis.resume()
    return [
        Row(
            STALL[name],
            STALL_TARGET,
            stalls[name],
            unit="s",
            note="RedisStore defaults: socket_timeout=0.25, socket_connect_timeout=0.25, retries=1",
        )
        for name in STALL
    ]
