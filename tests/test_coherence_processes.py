"""Coherence across real processes: real local stores (Redis, a tempfile directory).

A reader process's fetch is held (its GET answered late by the fault proxy, the process
itself stopped with SIGSTOP) until its lease lapsed; another process writes meanwhile.  The
stalled fetch must not store its older bytes over the write, so a fresh process reads the
new version.  And a fetch held between its fence and its store while another process
clears the cache stores nothing, even of a key that had no copy for the clear to find.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cached_stores_factory import CachedStore, Store
from cached_stores_factory.testing.faults import FaultProxy, slow_first_byte
from cached_stores_factory.testing.servers import RedisServer, S3Server
from cached_stores_factory_tempfile import TempfileStore

WAIT = 30.0  # seconds a step may take before the test gives up (a guard, not a timing check)

READER = textwrap.dedent(
    """
    import sys
    from cached_stores_factory import CachedStore, Store
    from cached_stores_factory.stores.redis_store import RedisStore
    from cached_stores_factory.stores.S3_store import S3Store

    port, prefix, endpoint, bucket = sys.argv[1:5]
    local = RedisStore(port=int(port), prefix=prefix, lease_timeout=1.0)
    remote = S3Store(
        bucketname=bucket, s3_region="eu-central-1", endpoint_url=endpoint,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    cached = CachedStore(local, remote)
    print(cached.get("k").decode(), flush=True)
    """
)


def cached_store(redis: RedisServer, prefix: str, s3: S3Server, bucket: str) -> CachedStore:
    from cached_stores_factory.stores.redis_store import RedisStore

    return CachedStore(RedisStore(port=redis.port, prefix=prefix), s3.store(bucket))


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    name = s3_server.new_bucket("coherence")
    s3_server.client().put_object(Bucket=name, Key="k", Body=b"v1")
    yield name


@pytest.mark.redis
@pytest.mark.s3
def test_a_fetch_stalled_past_its_lease_never_stores_over_a_write_elsewhere(
    redis_server: RedisServer, s3_server: S3Server, fault_proxy: FaultProxy, bucket: str
) -> None:
    prefix = f"coherence-{os.getpid()}-{time.monotonic_ns()}:"
    fault_proxy.plan(slow_first_byte(2.0), method="GET", path_contains="/k")
    arguments = [str(redis_server.port), prefix, fault_proxy.endpoint_url, bucket]
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT
        while fault_proxy.count("GET", "/k") == 0:  # the reader asked S3: it has version 1
            assert reader.poll() is None, reader.communicate()
            assert time.monotonic() < deadline, "the reader never fetched"
            time.sleep(0.02)
        reader.send_signal(signal.SIGSTOP)  # stopped: its lease lapses, nothing renews it
        time.sleep(1.5)
        writer = cached_store(redis_server, prefix, s3_server, bucket)
        writer.put("k", b"v2")
        reader.send_signal(signal.SIGCONT)
        out, err = reader.communicate(timeout=WAIT)
    finally:
        reader.kill()
        reader.wait(WAIT)
    assert reader.returncode == 0, err
    assert out.strip() in ("v1", "v2")  # the stalled read overlapped the write: either is right
    fresh = cached_store(redis_server, prefix, s3_server, bucket)
    assert fresh.get("k") == b"v2"
    assert fresh.stats()["hits"] == 1  # served by the cache, which holds the write's version


# The remote is a tempfile directory both processes open; the reader's GET reads the version
# there, says so (a file `fetched`), and answers only once the file `go` appears.
GATED_READER = textwrap.dedent(
    """
    import pathlib, sys, time
    from cached_stores_factory import BytesReader, CachedStore, EntryReader
    from cached_stores_factory.stores.redis_store import RedisStore
    from cached_stores_factory_tempfile import TempfileStore

    gates, remote_root, kind, where = sys.argv[1:5]
    gates = pathlib.Path(gates)

    class GatedRemote(TempfileStore):
        def open_read(self, key):
            with super().open_read(key) as entry:
                data, stat = entry.read(), entry.stat
            (gates / "fetched").touch()
            deadline = time.monotonic() + 30
            while not (gates / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            return EntryReader(BytesReader(data), stat)

    if kind == "redis":
        port, prefix = where.split(" ")
        local = RedisStore(port=int(port), prefix=prefix)
    else:
        local = TempfileStore("cache", root=where)
    cached = CachedStore(local, GatedRemote("remote", root=remote_root))
    print(cached.get("k").decode(), flush=True)
    """
)


def local_store(kind: str, where: str) -> Store:
    """The local store GATED_READER opens, opened here too."""
    if kind == "redis":
        from cached_stores_factory.stores.redis_store import RedisStore

        port, prefix = where.split(" ")
        return RedisStore(port=int(port), prefix=prefix)
    return TempfileStore("cache", root=where)


@pytest.mark.parametrize("kind", [pytest.param("redis", marks=pytest.mark.redis), "tempfile"])
def test_a_fetch_held_in_another_process_stores_nothing_after_a_clear(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The reader fetches v1 of a key nobody cached and is held before it stores it; another
    client writes v2, and this process clears the cache, finding no copy of the key."""
    if kind == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        where = f"{redis.port} clear-{os.getpid()}-{time.monotonic_ns()}:"
    else:
        where = str(tmp_path / "cache")
    gates = tmp_path / "gates"
    gates.mkdir()
    remote = TempfileStore("remote", root=tmp_path / "remote")
    remote.put("k", b"v1")
    arguments = [str(gates), str(remote.root), kind, where]
    reader = subprocess.Popen(
        [sys.executable, "-c", GATED_READER, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT
        while not (gates / "fetched").exists():  # the reader has its fence, and version 1
            assert reader.poll() is None, reader.communicate()
            assert time.monotonic() < deadline, "the reader never fetched"
            time.sleep(0.02)
        remote.put("k", b"v2")
        with local_store(kind, where) as local:
            clearing = CachedStore(local, remote)
            assert clearing.clear() == 0
            (gates / "go").touch()
            out, err = reader.communicate(timeout=WAIT)
            assert reader.returncode == 0, err
            assert out.strip() in ("v1", "v2")  # it overlapped the change: either is right
            assert "k" not in local
            assert clearing.get("k") == b"v2"
    finally:
        reader.kill()
        reader.wait(WAIT)
