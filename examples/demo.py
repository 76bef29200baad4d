"""`make demo`: the original Example 1 on nothing but this machine.

It starts moto's S3 server on a free loopback port, writes an AWS profile for it into a
temporary directory (so the original `S3Store(bucketname=..., s3_profile=..., s3_region=...)`
runs unchanged), uploads a few objects and reads them through TempfileStore + S3Store +
TTLCache.  Each step prints where the bytes came from and how long it took; each phase ends
with the cache's counters.  It shows a TTL expiry, an LRU eviction, single-flight and a
write-through, and uses the Redis on localhost:6379 as a second cache if one answers.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cached_stores_factory.caches.LRU_cache import LRUCache
from cached_stores_factory.caches.TTL_cache import TTLCache
from cached_stores_factory.factories.cached_store_factory import CachedStoreFactory
from cached_stores_factory.stores.S3_store import S3Store
from cached_stores_factory.stores.tempfile_store import TempfileStore
from cached_stores_factory.testing.servers import free_port

BUCKET = "my_bucket"
PROFILE = "my_profile"
REGION = "eu-central-1"
TTL = 1.0  # seconds: short, so the demo can watch an entry expire
OBJECTS = {
    "reports/2024.csv": b"month,sales\n" + b"".join(b"%d,%d\n" % (m, m * 1000) for m in range(12)),
    "reports/2025.csv": b"month,sales\n" + b"".join(b"%d,%d\n" % (m, m * 1100) for m in range(12)),
    "images/logo.bin": bytes(range(256)) * 4096,  # 1 MiB
    "path/my.file": b"the original file\n",
}
STATS = (
    "hits",
    "misses",
    "coalesced",
    "remote_reads",
    "remote_writes",
    "evictions",
    "revalidated",
)


def start_s3(workdir: Path) -> tuple[Any, str]:
    """moto's S3 server on 127.0.0.1, and an AWS profile that points at it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log in the table
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    config = workdir / "aws-config"
    config.write_text(
        f"[profile {PROFILE}]\nendpoint_url = {endpoint}\nregion = {REGION}\n"
        "aws_access_key_id = demo\naws_secret_access_key = demo\n"
    )
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        del os.environ[name]  # nothing here may reach a real account
    os.environ["AWS_CONFIG_FILE"] = str(config)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(workdir / "no-credentials")
    return server, endpoint


def s3_client() -> Any:
    import boto3

    return boto3.session.Session(profile_name=PROFILE).client("s3")


def redis_answers(host: str = "localhost", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class Table:
    """One row per step: the object, where its bytes came from, their size and the latency."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.step = 0

    def header(self, title: str) -> None:
        print(f"\n== {title}")
        print(f"  {'step':>4}  {'object':<22} {'source':<7} {'bytes':>8} {'latency':>10}")

    def measure(self, key: str, action: Callable[[], bytes], label: str = "") -> bytes:
        """Run `action`, then print its row: "remote" if it fetched the object, "304" if the
        remote confirmed the expired copy unchanged, else "cache"."""
        before = self.store.stats()
        started = time.perf_counter()
        data = action()
        elapsed = time.perf_counter() - started
        after = self.store.stats()
        source = label or (
            "remote"
            if after["remote_reads"] > before["remote_reads"]
            else "304"
            if after["revalidated"] > before["revalidated"]
            else "cache"
        )
        self.row(key, source, len(data), elapsed)
        return data

    def read(self, key: str) -> bytes:
        def whole() -> bytes:
            with self.store.open(key, "rb") as handle:
                data: bytes = handle.read()
                return data

        return self.measure(key, whole)

    def row(self, key: str, source: str, size: int, seconds: float) -> None:
        self.step += 1
        print(f"  {self.step:>4}  {key:<22} {source:<7} {size:>8} {seconds * 1000:>8.2f} ms")

    def stats(self) -> None:
        counters = self.store.stats()
        print("  stats: " + "  ".join(f"{name}={counters[name]}" for name in STATS))


def phase_example_1() -> None:
    """The original Example 1, with a TTL short enough to watch."""
    temp_store = TempfileStore("my_local_store")  # in the demo's temporary directory
    s3_store = S3Store(bucketname=BUCKET, s3_profile=PROFILE, s3_region=REGION)
    ttl_cache = TTLCache(interval=TTL)
    CS = CachedStoreFactory(temp_store, s3_store, ttl_cache).build()
    table = Table(CS)

    table.header(f"Example 1: TempfileStore + S3Store + TTLCache(interval={TTL})")
    for key in ("reports/2024.csv", "reports/2024.csv", "images/logo.bin", "images/logo.bin"):
        table.read(key)
    table.stats()

    table.header(f"TTL expiry: {TTL + 0.2:.1f} s later the entry is revalidated (an S3 304)")
    time.sleep(TTL + 0.2)
    table.read("reports/2024.csv")
    table.read("reports/2024.csv")
    table.stats()

    table.header("Single-flight: 16 threads read one cold object at once")
    before = CS.stats()["remote_reads"]
    barrier = threading.Barrier(16)
    results: list[bytes] = []

    def reader() -> None:
        barrier.wait()
        with CS.open("reports/2025.csv", "rb") as handle:
            results.append(handle.read())

    threads = [threading.Thread(target=reader) for _ in range(16)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fetches = CS.stats()["remote_reads"] - before
    table.row("reports/2025.csv", "remote", len(results[0]), time.perf_counter() - started)
    assert len(results) == 16 and len(set(results)) == 1
    print(f"  16 readers got identical bytes from {fetches} remote fetch")
    table.stats()

    table.header("Write-through: the original examples' open / read / write, never closed")
    opened: list[Any] = []

    def open_and_read() -> bytes:
        CSFD = CS.open("path/my.file")  # the default mode, r+b, as in the original examples
        opened.append(CSFD)
        data: bytes = CSFD.read()
        return data

    res = table.measure("path/my.file", open_and_read)
    CSFD = opened[0]
    my_data = b"my_data, appended\n"

    def write() -> bytes:
        CSFD.write(my_data)
        CSFD.close()  # the examples never close: garbage collection or exit would commit it
        return res + my_data

    table.measure("path/my.file", write, label="written")
    remote = s3_client().get_object(Bucket=BUCKET, Key="path/my.file")["Body"].read()
    print(f"  S3 now holds {remote!r}")
    assert remote == OBJECTS["path/my.file"] + b"my_data, appended\n"
    table.read("path/my.file")
    table.stats()
    CS.close()


def phase_lru() -> None:
    """A bounded cache: the least recently used entry makes room."""
    local = TempfileStore("lru_store")
    CS = CachedStoreFactory(
        local, S3Store(bucketname=BUCKET, s3_profile=PROFILE, s3_region=REGION), LRUCache(depth=2)
    ).build()
    table = Table(CS)
    table.header("LRU eviction: LRUCache(depth=2); read 2024, 2025, 2024 again, then logo")
    for key in ("reports/2024.csv", "reports/2025.csv", "reports/2024.csv", "images/logo.bin"):
        table.read(key)
    print(f"  local copies now: {sorted(local.keys())}  (2025 was least recently used)")
    table.read("reports/2025.csv")
    table.stats()
    CS.close()


def phase_redis() -> None:
    """The original Example 2, if a Redis answers on localhost:6379."""
    if not redis_answers():
        print("\n== Redis: nothing answers on localhost:6379, so the Redis tier is skipped")
        print("   (start one, e.g. `redis-server`, and run `make demo` again to see it)")
        return
    from cached_stores_factory.errors import StoreError
    from cached_stores_factory.stores.redis_store import RedisStore

    redis_store = RedisStore(
        host="localhost", port=6379, ex=5 * 60, prefix=f"csf-demo-{os.getpid()}:"
    )
    CS = CachedStoreFactory(
        redis_store, S3Store(bucketname=BUCKET, s3_profile=PROFILE, s3_region=REGION)
    ).build()
    table = Table(CS)
    table.header("Example 2: RedisStore(localhost:6379, ex=300) + S3Store")
    try:
        for key in ("reports/2024.csv", "reports/2024.csv"):
            table.read(key)
        table.stats()
        redis_store.clear()  # only this demo's prefix
    except StoreError as exc:  # a Redis that wants a password, say: not the demo's to fix
        print(f"  the Redis on localhost:6379 refused the demo ({exc}); skipped")
    finally:
        CS.close()


def main() -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="csf-demo-") as workdir:
        root = Path(workdir)
        tempfile.tempdir = workdir  # TempfileStore("name") lands here, and goes with it
        server, endpoint = start_s3(root)
        try:
            client = s3_client()
            client.create_bucket(
                Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
            for key, data in OBJECTS.items():
                client.put_object(Bucket=BUCKET, Key=key, Body=data)
            print(f"S3: moto server on {endpoint}, profile {PROFILE!r} points at it")
            print(f"    bucket {BUCKET!r} holds {len(OBJECTS)} objects: {', '.join(OBJECTS)}")
            phase_example_1()
            phase_lru()
            phase_redis()
        finally:
            server.stop()
            tempfile.tempdir = None
    print(f"\nDemo finished in {time.perf_counter() - started:.1f} s: all steps behaved.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
