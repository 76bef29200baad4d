"""Helpers for the policies' tests: a store with a state directory, aging, a worker.

Not a test module (no `test_` prefix): the multi-process test's workers import it by name.
"""

from __future__ import annotations

import io
import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cached_stores_factory import CachedStore, CachedStoreFactory, CachePolicy
from cached_stores_factory.errors import KeyNotFoundError
from cached_stores_factory.testing.policies import RecordingStore
from cached_stores_factory_policies import FIFOCache, LRUCache
from cached_stores_factory_tempfile import TempfileStore

_ENTRY_NAME = re.compile(r"[0-9a-f]{64}")


class StatefulMemoryStore(RecordingStore):
    """A memory store with a state directory: the SQLite ledger with a manual clock."""

    def __init__(self, state: Path, *, clock: Callable[[], float]) -> None:
        super().__init__(clock=clock)
        self._state = state

    def state_dir(self) -> Path:
        return self._state


def age_tempfile_store(store: TempfileStore, seconds: float) -> None:
    """Make every entry `seconds` older: a clock advance for a store that reads mtimes."""
    objects = store.root / "objects"
    for path in objects.iterdir():
        if _ENTRY_NAME.fullmatch(path.name):
            info = path.stat()
            os.utime(path, (info.st_atime - seconds, info.st_mtime - seconds))


def make_policy(kind: str, depth: int) -> CachePolicy:
    return {"fifo": FIFOCache, "lru": LRUCache}[kind](depth)


def payload(key: str, seed: int, step: int) -> bytes:
    """Bytes that say which key they belong to, so a reader can check what it got."""
    return f"{key}|{seed}|{step};".encode() * (1 + step % 40)


def churn(cached: CachedStore, operations: int, seed: int) -> None:
    """Random reads, writes and deletes of 30 keys; every read must return whole bytes."""
    rng = random.Random(seed)
    keys = [f"k{i:02d}" for i in range(30)]
    for step in range(operations):
        key = rng.choice(keys)
        action = rng.random()
        if action < 0.4:
            cached.put_stream(key, io.BytesIO(payload(key, seed, step)))
        elif action < 0.95:
            try:
                with cached.open_read(key) as entry:
                    got = entry.read()
            except KeyNotFoundError:
                continue  # never written, or deleted by some process
            unit = got.split(b";", 1)[0] + b";"
            assert unit.startswith(key.encode() + b"|"), (key, got[:40])
            assert got == unit * (len(got) // len(unit)), (key, got[:40])
        else:
            cached.delete(key)


def churn_worker(root: str, kind: str, depth: int, operations: int, seed: int) -> None:
    """One process of the multi-process test over one tempfile cache.

    The processes share the local store (`root`/local) and the remote (`root`/remote, a
    tempfile store with no policy).  Any exception fails the process, which the test sees in
    its exit code.
    """
    remote = TempfileStore("remote", root=Path(root) / "remote", fsync=False)
    local = TempfileStore("local", root=Path(root) / "local", fsync=False)
    cached = CachedStoreFactory(local, remote, make_policy(kind, depth)).build()
    try:
        churn(cached, operations, seed)
    finally:
        cached.close()


def cluster_churn_worker(
    host: str,
    port: int,
    prefix: str,
    remote_root: str,
    kind: str,
    depth: int,
    operations: int,
    seed: int,
) -> None:
    """One process of the fleet test: a Redis Cluster local store, its ledger in the cluster."""
    from cached_stores_factory_redis import RedisStore

    remote = TempfileStore("remote", root=Path(remote_root), fsync=False)
    local = RedisStore(host, port, cluster=True, prefix=prefix)
    cached = CachedStoreFactory(local, remote, make_policy(kind, depth)).build()
    try:
        churn(cached, operations, seed)
    finally:
        cached.close()


def fleet_worker(
    endpoint_url: str,
    bucket: str,
    remote_root: str,
    ledger_url: str,
    ledger_key: str,
    kind: str,
    depth: int,
    seed: int,
    stop: Any,
    done: Any,
) -> None:
    """One process of the self-healing test: a frequent bucket (S3) bounded by a ledger in
    Redis, over a tempfile remote.  It churns until `stop` is set, adding each operation that
    succeeded to `done`; those that fail while Redis restarts are expected and skipped."""
    from cached_stores_factory.errors import CSFError
    from cached_stores_factory_s3 import S3Store

    local = S3Store(
        bucket,
        s3_region="eu-central-1",
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    remote = TempfileStore("remote", root=Path(remote_root), fsync=False)
    policy = {"fifo": FIFOCache, "lru": LRUCache}[kind](
        depth, ledger=ledger_url, ledger_key=ledger_key
    )
    cached = CachedStoreFactory(local, remote, policy).build()
    rng = random.Random(seed)
    try:
        while not stop.is_set():
            key = f"k{rng.randrange(40):02d}"
            try:
                if rng.random() < 0.3:
                    cached.put_stream(key, io.BytesIO(payload(key, seed, 1)))
                else:
                    cached.open_read(key).close()
            except KeyNotFoundError:
                pass
            except CSFError:
                continue  # Redis is restarting
            with done.get_lock():
                done.value += 1
    finally:
        cached.close()
