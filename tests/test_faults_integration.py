"""The engine's fault handling against the real servers: moto's S3 over HTTP, a redis-server
process that is killed and SIGSTOPped, and tempfile roots that are full or read-only.

Counts, values and log records are asserted; sleeps only let short TTLs pass, never timings.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cached_stores_factory import CachedStoreFactory, MemoryStore, _resilience
from cached_stores_factory.caches.TTL_cache import TTLCache
from cached_stores_factory.errors import LocalStoreUnavailableError, RemoteError
from cached_stores_factory.stores.tempfile_store import TempfileStore
from cached_stores_factory.testing.faults import RedisControl, tmpfs
from cached_stores_factory.testing.servers import S3Server, running_s3
from cached_stores_factory_tempfile._store import _entry_name


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "cached_stores_factory"
    ]


# -- S3: revalidation and outages ------------------------------------------------------------


@pytest.mark.s3
def test_an_unchanged_expiry_is_a_304_and_sends_no_body(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket("faults")
    body = bytes(range(256)) * 4096  # 1 MiB
    s3_server.client().put_object(Bucket=bucket, Key="data/blob", Body=body)
    cs = CachedStoreFactory(
        TempfileStore("reval", root=tmp_path / "cache"),
        s3_server.store(bucket),
        TTLCache(interval=0.3),
    ).build()
    assert cs.get("data/blob") == body
    fetched = cs.stats()["bytes_from_remote"]
    sent = s3_server.bytes_sent("GET", "data/blob")
    time.sleep(0.4)
    assert cs.get("data/blob") == body
    assert s3_server.statuses("GET", "data/blob")[-1] == 304
    assert s3_server.bytes_sent("GET", "data/blob") == sent  # no body the second time
    assert cs.stats()["bytes_from_remote"] == fetched
    assert cs.stats()["revalidated"] == 1
    requests = s3_server.count(path_contains="data/blob")
    assert cs.get("data/blob") == body  # re-stamped fresh: a hit, no request
    assert s3_server.count(path_contains="data/blob") == requests
    # A changed object is fetched whole and replaces the copy.
    s3_server.client().put_object(Bucket=bucket, Key="data/blob", Body=b"changed")
    time.sleep(0.4)
    assert cs.get("data/blob") == b"changed"
    assert s3_server.statuses("GET", "data/blob")[-1] == 200


@pytest.mark.s3
def test_a_stale_copy_is_served_while_the_s3_endpoint_is_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with contextlib.ExitStack() as running:
        server = running.enter_context(running_s3())
        bucket = server.new_bucket("faults")
        server.client().put_object(Bucket=bucket, Key="k", Body=b"the value")
        remote = server.store(bucket)
        local = TempfileStore("stale", root=tmp_path / "cache")
        within = CachedStoreFactory(local, remote, TTLCache(interval=0.2, stale_if_error=60.0))
        cs = within.build()
        assert cs.get("k") == b"the value"
        running.close()  # the endpoint is gone: connections are refused
        time.sleep(0.3)
        with caplog.at_level(logging.WARNING):
            assert [cs.get("k") for _ in range(3)] == [b"the value"] * 3
        assert cs.stats()["stale_served"] == 3
        assert len([m for m in warnings_of(caplog) if "remote store" in m]) == 1
        # Past the window (here 0.1 s past expiry), the read raises and names the store.
        past = CachedStoreFactory(local, remote, TTLCache(interval=0.2, stale_if_error=0.1)).build()
        with pytest.raises(RemoteError, match=bucket):
            past.get("k")


@pytest.mark.s3
def test_stale_while_revalidate_refreshes_once_in_the_background(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket("faults")
    s3_server.client().put_object(Bucket=bucket, Key="k", Body=b"version 1")
    local = TempfileStore("swr", root=tmp_path / "cache")
    cs = CachedStoreFactory(
        local, s3_server.store(bucket), TTLCache(interval=0.3, stale_while_revalidate=60.0)
    ).build()
    assert cs.get("k") == b"version 1"
    s3_server.client().put_object(Bucket=bucket, Key="k", Body=b"version 2")
    time.sleep(0.4)
    gets = s3_server.count("GET", f"/{bucket}/k")
    assert [cs.get("k") for _ in range(10)] == [b"version 1"] * 10  # at once, stale
    deadline = time.monotonic() + 10
    while local.get("k") != b"version 2":
        assert time.monotonic() < deadline, "the background refresh never happened"
        time.sleep(0.05)
    assert s3_server.count("GET", f"/{bucket}/k") == gets + 1  # one refresh for ten reads
    assert cs.stats()["stale_served"] == 10
    assert cs.get("k") == b"version 2"


def test_a_flipped_byte_in_a_tempfile_entry_is_never_served(tmp_path: Path) -> None:
    remote = MemoryStore()
    for key, size in (("small", 4096), ("large", 3 * 1024 * 1024)):
        remote.put(key, bytes(range(256)) * (size // 256))
    local = TempfileStore("flip", root=tmp_path / "cache")
    cs = CachedStoreFactory(local, remote).build()
    for key in ("small", "large"):
        assert cs.get(key) == remote.get(key)
        data_file = tmp_path / "cache" / "objects" / _entry_name(key)
        raw = bytearray(data_file.read_bytes())
        raw[len(raw) // 3] ^= 0x01
        data_file.write_bytes(bytes(raw))
        assert cs.get(key) == remote.get(key)  # detected, dropped and fetched again
    assert cs.stats()["remote_reads"] == 4


# -- Redis as the local store: killed, hung, back ----------------------------------------------


@pytest.fixture
def fast_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry a failed local store after 0.2 s instead of 1 s, so recovery is quick to see."""
    monkeypatch.setattr(_resilience, "BACKOFF_FIRST", 0.2)


def redis_cache(control: RedisControl) -> tuple[Any, MemoryStore, Any]:
    from cached_stores_factory.stores.redis_store import RedisStore

    local = RedisStore(control.server.host, control.server.port, prefix="faults:")
    remote = MemoryStore()
    for index in range(5):
        remote.put(f"k{index}", f"value {index}".encode())
    return CachedStoreFactory(local, remote).build(), remote, local


def read_all(cs: Any) -> list[bytes]:
    return [cs.get(f"k{index}") for index in range(5)]


EXPECTED = [f"value {index}".encode() for index in range(5)]


def wait_for_caching(cs: Any, expected: list[bytes]) -> None:
    """Read until every read is a hit again: the local store is back in use (bounded)."""
    deadline = time.monotonic() + 15
    while True:
        hits = cs.stats()["hits"]
        assert read_all(cs) == expected
        if cs.stats()["hits"] == hits + len(expected):
            return
        assert time.monotonic() < deadline, "caching never resumed"
        time.sleep(0.1)


@pytest.mark.redis
@pytest.mark.parametrize("fault", ["kill", "pause"])
def test_reads_survive_a_redis_local_store_that_dies_or_hangs(
    redis_control: RedisControl, fast_retry: None, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    cs, remote, local = redis_cache(redis_control)
    assert read_all(cs) == EXPECTED
    assert cs.stats()["remote_reads"] == 5
    with caplog.at_level(logging.WARNING):
        getattr(redis_control, fault)()
        for _ in range(4):
            assert read_all(cs) == EXPECTED  # from the remote, each read bounded
        with pytest.raises(LocalStoreUnavailableError, match="'k0' was not written"):
            cs.put("k0", b"written during the outage")  # a copy elsewhere could outlive it
        assert remote.get("k0") == b"value 0"
        outage = [m for m in warnings_of(caplog) if "local store" in m and "failed" in m]
        assert len(outage) == 1, warnings_of(caplog)
        if fault == "kill":
            redis_control.restart()  # a new, empty server on the same port
        else:
            redis_control.resume()
        wait_for_caching(cs, EXPECTED)  # every read a hit: served from Redis again
        cs.put("k0", b"written after the outage")
    assert any("answers again" in m for m in warnings_of(caplog))
    assert local.get("k0") == b"written after the outage"
    assert cs.get("k0") == remote.get("k0") == b"written after the outage"


@pytest.mark.redis
@pytest.mark.parametrize("policy", ["fifo", "lru"])
def test_a_bounded_policy_over_a_dead_redis_still_builds_and_reads(
    redis_control: RedisControl, policy: str
) -> None:
    """Its ledger lives in the same Redis, which is gone: reads go to the remote."""
    redis_control.kill()
    cs = CachedStoreFactory.from_config(
        {
            "local": {"store": "redis", "port": redis_control.server.port, "prefix": "dead:"},
            "remote": {"store": "memory"},
            "policy": {"name": policy, "depth": 3},
        }
    ).build()
    cs.remote.put("k", b"from the remote")
    assert cs.get("k") == b"from the remote"
    with pytest.raises(LocalStoreUnavailableError, match="'w' was not written"):
        cs.put("w", b"written")
    assert "w" not in cs.remote


# -- tempfile roots that are full or read-only ------------------------------------------------


def test_a_full_tempfile_root_still_writes_through_and_serves_the_new_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    remote = MemoryStore()
    with tmpfs(tmp_path / "full", "1m") as mount:
        local = TempfileStore("full", root=mount)
        cs = CachedStoreFactory(local, remote).build()
        cs.put("k", b"old")
        big = b"x" * (2 * 1024 * 1024)  # larger than the whole filesystem
        with caplog.at_level(logging.WARNING):
            cs.put("k", big)  # the remote write succeeds; the local one can't
        assert remote.get("k") == big
        assert "k" not in local  # no older copy left behind
        assert cs.get("k") == big  # served uncached
        assert any("No space left" in m for m in warnings_of(caplog))


def test_a_read_only_tempfile_root_never_serves_the_copy_it_could_not_drop(
    tmp_path: Path, fast_retry: None
) -> None:
    remote = MemoryStore()
    with tmpfs(tmp_path / "ro", "4m") as mount:
        local = TempfileStore("ro", root=mount)
        cs = CachedStoreFactory(local, remote).build()
        cs.put("k", b"old")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        with pytest.raises(LocalStoreUnavailableError, match="'k' was not written"):
            cs.put("k", b"new")  # the old copy would stay on the read-only disk
        assert local.get("k") == remote.get("k") == b"old"
        available = CachedStoreFactory(local, remote, availability=True).build()
        available.put("k", b"new")  # written anyway: the old copy stays on the disk
        assert local.get("k") == b"old"
        assert remote.get("k") == b"new"
        assert available.get("k") == b"new"  # bypassed here, never served
        assert available.get("k") == b"new"
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
        time.sleep(0.3)  # past the back-off: the next call tries the local store again
        assert available.get("k") == b"new"
        assert local.get("k") == b"new"  # dropped, then cached again
