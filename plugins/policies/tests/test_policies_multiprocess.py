"""Four processes share one tempfile cache: the bound holds and nobody raises."""

from __future__ import annotations

import multiprocessing
import sqlite3
from contextlib import closing
from pathlib import Path

import policies_testlib
import pytest

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
