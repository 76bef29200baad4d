"""Four processes share one cache: the bound holds and nobody raises.

Over one tempfile directory (the SQLite ledger) and over one Redis Cluster (the ledger in
the cluster, next to the entries).
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import policies_testlib
import pytest

from cached_stores_factory.testing.servers import RedisCluster
from cached_stores_factory_tempfile import TempfileStore

PROCESSES = 4
OPERATIONS = 200
DEPTH = 10


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ["fifo", "lru"])
def test_processes_share_one_bound(tmp_path: Path, kind: str) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=policies_testlib.churn_worker,
            args=(str(tmp_path), kind, DEPTH, OPERATIONS, seed),
        )
        for seed in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    for worker in workers:
        if worker.is_alive():
            worker.kill()
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    local = TempfileStore("local", root=tmp_path / "local")
    remote = TempfileStore("remote", root=tmp_path / "remote")
    held = set(local.keys())
    assert 0 < len(held) <= DEPTH
    # Eviction dropped local copies only: each one still held is one the remote holds.
    assert held <= set(remote.keys())
    # The shared ledger tracks every entry left behind, and itself holds the bound.
    with closing(sqlite3.connect(local.state_dir() / f"{kind}.sqlite3")) as db:
        rows = {key for (key,) in db.execute("SELECT key FROM entries")}
    assert held <= rows
    assert len(rows) <= DEPTH


def paused_count(nodes: list[Any], prefix: str) -> int:
    """Entries under `prefix` in the whole cluster, counted while no node takes a write.

    Each node is paused for writes (scripts too) in turn, then all are counted, then all
    resume: every process's writes so far form a prefix of its program, so the count is one
    the processes really reached together, not a mix of moments.
    """
    for node in nodes:
        node.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
    try:
        return sum(
            1
            for node in nodes
            for _ in node.scan_iter(match=f"{prefix}*", count=1000, _type="HASH")
        )
    finally:
        for node in nodes:
            node.execute_command("CLIENT", "UNPAUSE")


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ["fifo", "lru"])
def test_processes_share_one_bound_over_a_redis_cluster(
    tmp_path: Path, kind: str, redis_cluster: RedisCluster
) -> None:
    import redis

    from cached_stores_factory_redis import RedisStore

    prefix = f"fleet-{uuid.uuid4().hex[:8]}:"
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=policies_testlib.cluster_churn_worker,
            args=(
                redis_cluster.host,
                redis_cluster.port,
                prefix,
                str(tmp_path / "remote"),
                kind,
                DEPTH,
                OPERATIONS,
                seed,
            ),
        )
        for seed in range(PROCESSES)
    ]
    local = RedisStore(redis_cluster.host, redis_cluster.port, cluster=True, prefix=prefix)
    nodes = [redis.Redis(host=node.host, port=node.port) for node in redis_cluster.nodes]
    samples = []
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 180
    while any(worker.is_alive() for worker in workers) and time.monotonic() < deadline:
        samples.append(paused_count(nodes, prefix))
        time.sleep(0.005)
    for node in nodes:
        node.close()
    for worker in workers:
        worker.join(timeout=10)
        if worker.is_alive():
            worker.kill()
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    # Between one process storing an entry and its ledger evicting, each process may hold
    # one entry over the bound; never more.
    assert len(samples) > 10
    assert max(samples) <= DEPTH + PROCESSES, samples
    held = set(local.keys())
    assert 0 < len(held) <= DEPTH
    assert held <= set(TempfileStore("remote", root=tmp_path / "remote").keys())
    order = f"csf-ledger:{{{kind}:redis:{prefix}}}:order"
    rows = {key.decode() for key in local.redis_client.zrange(order, 0, -1)}
    assert held <= rows
    assert len(rows) <= DEPTH
    local.clear()
    local.redis_client.delete(order)
    local.close()
