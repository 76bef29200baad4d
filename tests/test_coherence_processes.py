"""Coherence across real processes: a real Redis local store and a real S3 endpoint.

A reader process's fetch is held (its GET answered late by the fault proxy, the process
itself stopped with SIGSTOP) until its lease lapsed; another process writes meanwhile.  The
stalled fetch must not store its older bytes over the write, so a fresh process reads the
new version.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from cached_stores_factory import CachedStore
from cached_stores_factory.testing.faults import FaultProxy, slow_first_byte
from cached_stores_factory.testing.servers import RedisServer, S3Server

pytestmark = [pytest.mark.redis, pytest.mark.s3]

WAIT = 30.0  # seconds a step may take before the test gives up (a guard, not a timing check)

READER = textwrap.dedent(
    """
    import sys
    from cached_stores_factory import CachedStore
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
