"""Self-healing ledgers, and a Redis ledger's flusher that lets go.

A ledger that lost its data (Redis restarted empty, its SQLite file removed) must notice
and reconcile with the local store, so the bound holds again without restarting anything.
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import policies_testlib
import pytest

from cached_stores_factory import CachedStoreFactory, MemoryStore
from cached_stores_factory.testing.servers import RedisServer, S3Server, start_redis, stop_process
from cached_stores_factory_policies import FIFOCache, LRUCache, _redis_ledger
from cached_stores_factory_tempfile import TempfileStore

DEPTH = 8
PROCESSES = 4


def csf_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("csf-")]


@pytest.mark.redis
def test_a_redis_ledger_that_lost_its_keys_is_rebuilt_by_the_next_insert(
    redis_server: RedisServer,
) -> None:
    key = f"heal-{uuid.uuid4().hex[:8]}"
    local = MemoryStore()
    cached = CachedStoreFactory(
        local, MemoryStore(), FIFOCache(3, ledger=redis_server.url, ledger_key=key)
    ).build()
    for name in ("a", "b", "c"):
        cached.put(name, b"x")
    for part in _redis_ledger.ledger_keys(key).values():
        redis_server.command("DEL", part)  # what a restart without persistence leaves
    cached.put("d", b"x")
    assert sorted(local.keys()) == ["b", "c", "d"]  # "a" was the oldest: rebuilt, then evicted
    cached.put("e", b"x")
    assert sorted(local.keys()) == ["c", "d", "e"]
    cached.close()


@pytest.mark.redis
def test_an_idle_redis_ledger_is_rebuilt_by_its_flusher(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_redis_ledger, "FLUSH_SECONDS", 0.01)
    monkeypatch.setattr(_redis_ledger, "CHECK_SECONDS", 0.01)
    key = f"heal-{uuid.uuid4().hex[:8]}"
    cached = CachedStoreFactory(
        MemoryStore(), MemoryStore(), LRUCache(3, ledger=redis_server.url, ledger_key=key)
    ).build()
    cached.put("a", b"x")
    order = _redis_ledger.ledger_keys(key)["order"]
    redis_server.command("DEL", order, _redis_ledger.ledger_keys(key)["meta"])
    deadline = time.monotonic() + 30  # bounds a hang, asserts no speed
    while b"a" not in redis_server.command("ZRANGE", order, "0", "-1"):
        assert time.monotonic() < deadline, "the flusher never rebuilt the ledger"
        time.sleep(0.01)
    cached.close()


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(280)
@pytest.mark.parametrize("kind", ["fifo", "lru"])
def test_a_fleet_keeps_its_bound_across_two_redis_restarts(
    tmp_path: Path, kind: str, s3_server: S3Server
) -> None:
    """4 processes, a frequent bucket bounded to 8 by a ledger in Redis; redis-server is
    really restarted empty, on the same port, twice while they work."""
    bucket = s3_server.new_bucket("frequent")
    process, redis = start_redis()
    context = multiprocessing.get_context("spawn")
    stop, done = context.Event(), context.Value("q", 0)
    workers = [
        context.Process(
            target=policies_testlib.fleet_worker,
            args=(
                s3_server.endpoint_url,
                bucket,
                str(tmp_path / "remote"),
                redis.url,
                f"fleet-{kind}",
                kind,
                DEPTH,
                seed,
                stop,
                done,
            ),
        )
        for seed in range(PROCESSES)
    ]
    try:
        for worker in workers:
            worker.start()
        for _restart in range(2):
            wait_for_operations(done, 150)
            stop_process(process)
            process, _ = start_redis(redis.port)
        wait_for_operations(done, 150)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()
        stop_process(process)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    held = [item["Key"] for item in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert 0 < len(held) <= DEPTH, held


def wait_for_operations(done: Any, more: int) -> None:
    """Until the workers have completed `more` operations since now (a hang fails)."""
    target = done.value + more
    deadline = time.monotonic() + 120
    while done.value < target:
        assert time.monotonic() < deadline, "the workers stopped making progress"
        time.sleep(0.05)


def test_a_removed_sqlite_ledger_is_rebuilt_by_the_next_insert(tmp_path: Path) -> None:
    """Two openers of one tempfile cache, as two processes: one goes on with the removed
    file, the other opens a new one; both must count in one ledger again."""
    remote = MemoryStore()

    def opener() -> Any:
        local = TempfileStore("local", root=tmp_path / "local")
        return local, CachedStoreFactory(local, remote, FIFOCache(DEPTH)).build()

    local, first = opener()
    for index in range(DEPTH):
        first.put(f"old{index}", b"x")
    (local.state_dir() / "fifo.sqlite3").unlink()
    _, second = opener()
    for index in range(DEPTH):
        first.put(f"first{index}", b"x")
    for index in range(DEPTH):
        second.put(f"second{index}", b"x")
    assert sorted(local.keys()) == [f"second{index}" for index in range(DEPTH)]
    first.close()
    second.close()


@pytest.mark.redis
def test_dropped_stores_leave_no_flusher_thread_and_close_stops_it(
    redis_server: RedisServer,
) -> None:
    before = set(csf_threads())

    def build() -> Any:
        key = f"threads-{uuid.uuid4().hex[:8]}"
        policy = LRUCache(3, ledger=redis_server.url, ledger_key=key)
        return CachedStoreFactory(MemoryStore(), MemoryStore(), policy).build()

    closed = build()
    flushers = set(csf_threads()) - before
    assert len(flushers) == 1
    closed.close()
    assert not any(thread.is_alive() for thread in flushers)

    dropped = [build() for _ in range(20)]
    started = set(csf_threads()) - before
    assert len(started) == 20
    del dropped  # without close()
    gc.collect()
    for thread in started:
        thread.join(timeout=30)  # bounds a hang: each ends at its next tick
    assert [thread for thread in started if thread.is_alive()] == []
