"""Many processes, one local store: one fetch per cold key, dead holders, no lost writes.

Real processes (spawned), a real redis-server and moto's S3 server over HTTP.  The lease
that makes these hold is the local store's: a lock file in a tempfile store's state
directory, or a Redis lease (redis-py's Lock, renewed while held) in a Redis store.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the spawned workers import fleet_workers

import fleet_workers

from cached_stores_factory.testing.servers import RedisServer, S3Server
from cached_stores_factory_tempfile import TempfileStore

pytestmark = [pytest.mark.redis, pytest.mark.s3, pytest.mark.slow]

PROCESSES = 4
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(params=["tempfile", "redis"])
def local_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def local_address(kind: str, tmp_path: Path, redis_server: RedisServer) -> str:
    if kind == "tempfile":
        return str(tmp_path / "local")
    if kind == "frequent-bucket":
        return f"{redis_server.url} fleet-{uuid.uuid4().hex[:8]}"
    return f"{redis_server.host}:{redis_server.port}/fleet-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[Any]:
    s3_server.reset()
    client = s3_server.client()
    for name in (fleet_workers.BUCKET, fleet_workers.FREQUENT_BUCKET):
        client.create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": fleet_workers.REGION}
        )
    yield client
    s3_server.reset()


def finish(processes: list[Any], timeout: float = 120) -> None:
    for process in processes:
        process.join(timeout)
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    assert [process.exitcode for process in processes] == [0] * len(processes)


@pytest.mark.parametrize("local_kind", ["tempfile", "redis", "frequent-bucket"])
def test_a_cold_key_read_by_four_processes_costs_one_get(
    local_kind: str,
    tmp_path: Path,
    redis_server: RedisServer,
    s3_server: S3Server,
    bucket: Any,
):
    data = os.urandom(3 * 1024 * 1024)  # big enough that the readers overlap
    bucket.put_object(Bucket=fleet_workers.BUCKET, Key="cold/key.bin", Body=data)
    s3_server.requests.clear()
    where = local_address(local_kind, tmp_path, redis_server)
    start, out = SPAWN.Event(), SPAWN.Queue()
    processes = [
        SPAWN.Process(
            target=fleet_workers.read_cold_key,
            args=(local_kind, where, s3_server.endpoint_url, "cold/key.bin", start, out),
        )
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    time.sleep(2)  # let every process build its store before the start signal
    start.set()
    digests = [out.get(timeout=120) for _ in processes]
    finish(processes)

    assert digests == [hashlib.sha256(data).hexdigest()] * PROCESSES
    assert s3_server.count("GET", f"/{fleet_workers.BUCKET}/cold/key.bin") == 1


def test_a_lease_holder_killed_mid_fetch_is_recovered_from(
    local_kind: str, tmp_path: Path, redis_server: RedisServer
):
    remote = TempfileStore("remote", root=tmp_path / "remote")
    remote.put("slow/key", b"the object")
    stall, holding = tmp_path / "stall", tmp_path / "holding"
    stall.touch()
    where = local_address(local_kind, tmp_path, redis_server)
    out = SPAWN.Queue()

    def reader() -> Any:
        return SPAWN.Process(
            target=fleet_workers.read_through_slow_remote,
            args=(
                local_kind,
                where,
                str(tmp_path / "remote"),
                str(stall),
                str(holding),
                "slow/key",
                out,
            ),
        )

    holder = reader()
    holder.start()
    deadline = time.monotonic() + 60
    while not holding.exists():  # the holder is inside its fetch, holding the lease
        assert time.monotonic() < deadline and holder.is_alive()
        time.sleep(0.05)
    waiter = reader()
    waiter.start()
    time.sleep(1)  # the waiter is waiting for the lease now
    assert out.empty()
    os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
    holder.join(10)
    if local_kind == "redis":  # the dead holder's lease can only outlive it by its timeout
        _, prefix = where.split("/", 1)
        remaining = int(redis_server.command("PTTL", f"csf-lease:{prefix}slow/key")[1:])
        assert 0 < remaining <= 2000, remaining
    stall.unlink()  # the remote answers again, for whoever fetches next
    # The lease was the holder's: the waiter takes it once the kernel (lock file) or the
    # timeout (2 s, Redis) frees it, and completes the read itself.
    assert out.get(timeout=60) == b"the object"
    finish([waiter])


ROUNDS = 200
KEYS = ["a", "b", "c"]


def test_two_processes_racing_writes_deletes_and_reads_leave_local_and_remote_agreeing(
    tmp_path: Path,
):
    local = TempfileStore("local", root=tmp_path / "local")
    remote = TempfileStore("remote", root=tmp_path / "remote")
    barrier = SPAWN.Barrier(3)
    racers = [
        SPAWN.Process(target=fleet_workers.race, args=(str(tmp_path), role, KEYS, ROUNDS, barrier))
        for role in ("one", "two")
    ]
    for racer in racers:
        racer.start()
    try:
        for round_ in range(ROUNDS):
            barrier.wait(60)  # both racers finished the round
            # Every local copy is the remote's current bytes; no deleted key stays cached.
            for key in KEYS:
                if key in local:
                    assert key in remote, f"round {round_}: {key!r} deleted but still cached"
                    assert local.get(key) == remote.get(key), f"round {round_}: {key!r} differs"
            barrier.wait(60)
    except BaseException:
        barrier.abort()  # releases the racers, which then fail
        for racer in racers:
            racer.join(30)
        raise
    finish(racers)
