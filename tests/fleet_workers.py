"""Process targets for the fleet tests (not a test module: spawned workers import it by name).

Each worker builds its own cached store from plain arguments, as a separate machine or
process would, and reports through its exit code and a queue.
"""

from __future__ import annotations

import hashlib
import io
import random
import time
from pathlib import Path
from typing import Any

from cached_stores_factory import CachedStore, CachedStoreFactory, Store
from cached_stores_factory.errors import KeyNotFoundError

BUCKET = "fleet-bucket"
FREQUENT_BUCKET = "fleet-frequent"
REGION = "eu-central-1"


def make_local(kind: str, where: str, lease_timeout: float = 30.0) -> Store:
    """`tempfile` at the path `where`, or `redis` at `host:port/prefix`."""
    if kind == "tempfile":
        from cached_stores_factory_tempfile import TempfileStore

        return TempfileStore("local", root=where)
    from cached_stores_factory_redis import RedisStore

    address, prefix = where.split("/", 1)
    host, port = address.split(":")
    return RedisStore(host, int(port), prefix=prefix, lease_timeout=lease_timeout)


def make_s3(endpoint_url: str, bucket: str = BUCKET) -> Store:
    from cached_stores_factory_s3 import S3Store

    return S3Store(
        bucket,
        s3_region=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def read_cold_key(kind: str, where: str, endpoint_url: str, key: str, start: Any, out: Any) -> None:
    """Build, wait for the start signal, read `key` once; put its sha256 on `out`.

    `kind` "frequent-bucket": the local store is the bucket FREQUENT_BUCKET under a FIFO
    policy whose ledger (and so the lease) is in Redis; `where` is "<redis url> <ledger key>".
    """
    if kind == "frequent-bucket":
        from cached_stores_factory_policies import FIFOCache

        url, ledger_key = where.split()
        policy = FIFOCache(10, ledger=url, ledger_key=ledger_key)
        local = make_s3(endpoint_url, FREQUENT_BUCKET)
        cached = CachedStoreFactory(local, make_s3(endpoint_url), policy).build()
    else:
        cached = CachedStoreFactory(make_local(kind, where), make_s3(endpoint_url)).build()
    start.wait(60)
    with cached.open_read(key) as entry:
        out.put(hashlib.sha256(entry.read()).hexdigest())
    cached.close()


class SlowRemote(Store):
    """A remote whose reads stall while the file `stall` exists: a fetch to kill midway."""

    def __init__(self, inner: Store, stall: Path, holding: Path) -> None:
        self.inner, self.stall, self.holding = inner, stall, holding

    def get(self, key: str) -> bytes:
        while self.stall.exists():
            self.holding.touch()  # tells the test this process is inside its fetch
            time.sleep(0.05)
        return self.inner.get(key)

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def delete(self, key: str) -> bool:
        return self.inner.delete(key)

    def keys(self, prefix: str = "") -> Any:
        return self.inner.keys(prefix)


def read_through_slow_remote(
    kind: str, where: str, remote_root: str, stall: str, holding: str, key: str, out: Any
) -> None:
    """Read `key` through a remote that stalls while `stall` exists; report the bytes."""
    from cached_stores_factory_tempfile import TempfileStore

    remote = SlowRemote(TempfileStore("remote", root=remote_root), Path(stall), Path(holding))
    cached = CachedStoreFactory(make_local(kind, where, lease_timeout=2.0), remote).build()
    with cached.open_read(key) as entry:
        out.put(entry.read())
    cached.close()


def race(root: str, role: str, keys: list[str], rounds: int, barrier: Any) -> None:
    """One of two racing processes: each round, a few writes, deletes and reads of `keys`.

    After each round it waits at `barrier` twice: once when its round is done, and again
    while the test compares the local store with the remote.
    """
    from cached_stores_factory_tempfile import TempfileStore

    local = TempfileStore("local", root=Path(root) / "local")
    remote = TempfileStore("remote", root=Path(root) / "remote")
    cached: CachedStore = CachedStoreFactory(local, remote).build()
    rng = random.Random(role)
    try:
        for round_ in range(rounds):
            for step in range(4):
                key = rng.choice(keys)
                action = rng.random()
                if action < 0.4:
                    cached.put_stream(key, io.BytesIO(f"{role}:{round_}:{step}".encode()))
                elif action < 0.6:
                    cached.delete(key)
                else:
                    try:
                        with cached.open_read(key) as entry:
                            entry.read()
                    except KeyNotFoundError:
                        pass
            barrier.wait(60)  # round done
            barrier.wait(60)  # checked
    finally:
        cached.close()
