"""S3 misses into a tempfile store beside boto3, and a 32-thread stampede on one cold key."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cached_stores_factory import CachedStore, MemoryStore, Store
from cached_stores_factory.testing.servers import S3Server

from ._harness import REPORT, MiB, Row, Sizes, Target, median_times, unavailable
from ._parts import PartMissing, part
from ._services import S3_CREDENTIALS

BUCKET = "csf-bench-remote"
MISS = "S3 miss into tempfile 1 MiB vs boto3 get_object + write"
MISS_TARGET = Target("ratio", "<=", 1.15)
MISS_FSYNC = "S3 miss into tempfile 1 MiB, TempfileStore(fsync=True), vs the same"
REQUESTS = "S3 miss: requests per miss"
REQUESTS_TARGET = Target("value", "==", 1, "requests")
STAMPEDE = "stampede: 32 threads read one cold key"
STAMPEDE_TARGET = Target("value", "==", 1, "fetches")
THREADS = 32


def s3_store(s3: S3Server, bucket: str = BUCKET) -> Store:
    """The project's S3 store on the benchmark endpoint; PartMissing until it exists."""
    store: Store = part("S3Store")(
        bucketname=bucket,
        s3_region=S3_CREDENTIALS["region_name"],
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=S3_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=S3_CREDENTIALS["aws_secret_access_key"],
    )
    return store


def create_bucket(s3: S3Server, bucket: str = BUCKET) -> Any:
    client = s3.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": S3_CREDENTIALS["region_name"]},
        )
    return client


def run_miss(sizes: Sizes, s3: S3Server | None, missing: str) -> list[Row]:
    figures = [(MISS, MISS_TARGET), (MISS_FSYNC, REPORT), (REQUESTS, REQUESTS_TARGET)]
    if s3 is None:
        return [unavailable(figure, target, missing) for figure, target in figures]
    try:
        tempfile_store = part("TempfileStore")
        remote = s3_store(s3)
    except PartMissing as exc:
        return [unavailable(figure, target, str(exc)) for figure, target in figures]
    client = create_bucket(s3)
    data = bytes(range(256)) * (MiB // 256)
    warmup = 3
    count = warmup + sizes.remote_rounds + 1
    keys = [f"miss/object-{index}.bin" for index in range(count)]
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=data)

    with tempfile.TemporaryDirectory(prefix="csf-bench-miss-") as tmp:
        workdir = Path(tmp)
        cached = CachedStore(tempfile_store("bench", root=workdir / "ours"), remote)
        # The same with the opt-in fsync that makes each new entry durable: what that costs.
        synced = CachedStore(
            tempfile_store("bench", root=workdir / "synced", fsync=True), s3_store(s3)
        )
        (workdir / "raw").mkdir()
        raw_keys = iter(keys)

        def raw() -> bytes:
            key = next(raw_keys)
            body: bytes = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            with (workdir / "raw" / key.replace("/", "_")).open("wb") as handle:
                handle.write(body)
            return body

        ours = _missing_reader(cached, keys)
        medians = median_times(
            {"ours": ours, "synced": _missing_reader(synced, keys), "raw": raw},
            rounds=sizes.remote_rounds,
            inner=1,
            warmup=warmup,
        )
        before = s3.count()
        if ours() != data:
            raise AssertionError("an S3 miss returned other bytes")
        per_miss = s3.count() - before
        log = s3.requests[before:]
        stats = cached.stats()
        cached.close()
        synced.close()
    if stats["remote_reads"] != count:
        raise AssertionError(f"expected {count} misses, the engine counted {stats}")
    return [
        Row(
            MISS,
            MISS_TARGET,
            medians["ours"] * 1e3,
            medians["raw"] * 1e3,
            "ms/op",
            "moto server in this process, loopback; a fresh key per call on both sides",
        ),
        Row(
            MISS_FSYNC,
            REPORT,
            medians["synced"] * 1e3,
            medians["raw"] * 1e3,
            "ms/op",
            f"fsync=True costs {medians['synced'] / medians['ours']:.2f}x the default",
        ),
        Row(
            REQUESTS,
            REQUESTS_TARGET,
            per_miss,
            unit="requests",
            note="counted by the server: " + ", ".join(f"{m} {p}" for m, p in log),
        ),
    ]


def _missing_reader(cached: CachedStore, keys: list[str]) -> Callable[[], bytes]:
    """Each call reads the next key of `keys`, which `cached` has never seen: a miss."""
    remaining = iter(keys)

    def read() -> bytes:
        with cached.open(next(remaining), "rb") as handle:
            result: bytes = handle.read()
            return result

    return read


class _CountingStore(MemoryStore):
    """A slow in-process remote that counts reads, for when no S3 store is available."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self._count_lock = threading.Lock()

    def open_read(self, key: str) -> Any:
        with self._count_lock:
            self.reads += 1
        time.sleep(0.05)  # long enough that every thread arrives during the fetch
        return super().open_read(key)


@contextlib.contextmanager
def _stampede_parts(
    s3: S3Server | None, workdir: Path
) -> Iterator[tuple[CachedStore, Callable[[str, bytes], None], Callable[[str], int], str]]:
    """A cached store, a way to seed the remote, a fetch counter, and what was used."""
    try:
        local: Store = part("TempfileStore")("bench", root=workdir / "local")
        local_name = "tempfile"
    except PartMissing:
        local, local_name = MemoryStore(), "memory"
    if s3 is not None:
        try:
            remote = s3_store(s3)
        except PartMissing:
            pass
        else:
            client = create_bucket(s3)
            cached = CachedStore(local, remote)

            def seed(key: str, data: bytes) -> None:
                client.put_object(Bucket=BUCKET, Key=key, Body=data)

            def fetches(key: str) -> int:
                return s3.count("GET", f"/{BUCKET}/{key}")

            try:
                yield cached, seed, fetches, f"{local_name} local, S3 remote, GETs counted by moto"
            finally:
                cached.close()
            return
    counting = _CountingStore()
    cached = CachedStore(local, counting)
    reads_before: dict[str, int] = {}

    def seed_memory(key: str, data: bytes) -> None:
        counting.put(key, data)
        reads_before[key] = counting.reads

    try:
        yield (
            cached,
            seed_memory,
            lambda key: counting.reads - reads_before[key],
            f"{local_name} local, in-process counting remote (no S3 store available)",
        )
    finally:
        cached.close()


def run_stampede(sizes: Sizes, s3: S3Server | None) -> list[Row]:
    data = bytes(range(256)) * (MiB // 256)
    counts = []
    with (
        tempfile.TemporaryDirectory(prefix="csf-bench-stampede-") as tmp,
        _stampede_parts(s3, Path(tmp)) as (cached, seed, fetches, what),
    ):
        for index in range(sizes.stampede_rounds):
            key = f"stampede/cold-{index}.bin"
            seed(key, data)
            counts.append(_race(cached, key, data, fetches))
    return [
        Row(
            STAMPEDE,
            STAMPEDE_TARGET,
            max(counts),
            unit="fetches",
            note=f"worst of {len(counts)} cold keys (each: {counts}); {what}",
        )
    ]


def _race(cached: CachedStore, key: str, data: bytes, fetches: Callable[[str], int]) -> int:
    """Start THREADS readers of `key` at once; return the remote fetches it cost."""
    barrier = threading.Barrier(THREADS, timeout=30)
    results: list[bytes | BaseException] = []
    lock = threading.Lock()

    def reader() -> None:
        try:
            barrier.wait()
            with cached.open(key, "rb") as handle:
                result: bytes | BaseException = handle.read()
        except BaseException as exc:
            result = exc
        with lock:
            results.append(result)

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if len(results) != THREADS or any(result != data for result in results):
        errors = {repr(r)[:200] for r in results if not isinstance(r, bytes)}
        raise AssertionError(f"{len(results)} of {THREADS} readers finished; errors: {errors}")
    return fetches(key)
