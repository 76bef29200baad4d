"""Tiers that can't eat each other: a local store that holds the remote's entries is refused.

Against the real stores: moto's S3 server, redis-server, directories on disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cached_stores_factory import CachedStoreFactory, MemoryStore, Store
from cached_stores_factory.errors import ConfigError
from cached_stores_factory.testing.servers import RedisServer, S3Server
from cached_stores_factory_policies import FIFOCache
from cached_stores_factory_redis import RedisStore
from cached_stores_factory_tempfile import TempfileStore

CSF = [sys.executable, "-m", "cached_stores_factory.cli"]


def refusal(local: Store, remote: Store, policy: FIFOCache | None = None) -> str:
    """The one-line ConfigError build() raises, which names both stores."""
    with pytest.raises(ConfigError) as raised:
        CachedStoreFactory(local, remote, policy).build()
    message = str(raised.value)
    assert "\n" not in message
    assert repr(local) in message
    assert repr(remote) in message
    assert "give the local store a place of its own" in message
    return message


def test_one_memory_store_as_both_tiers_is_refused() -> None:
    store = MemoryStore()
    assert "are one store object" in refusal(store, store)
    CachedStoreFactory(MemoryStore(), MemoryStore()).build().close()  # two stores: fine


@pytest.mark.parametrize(
    ("local_root", "remote_root", "relation"),
    [
        ("cache", "cache", "the same place"),
        ("cache", "cache/objects/inner", "one lies inside the other"),
        ("cache/inner", "cache", "one lies inside the other"),
        ("alias/cache", "cache", "the same place"),  # `alias` is a symlink to the parent
    ],
)
def test_tempfile_roots_that_overlap_are_refused(
    tmp_path: Path, local_root: str, remote_root: str, relation: str
) -> None:
    (tmp_path / "cache").mkdir(mode=0o700)
    (tmp_path / "alias").symlink_to(tmp_path)
    remote = TempfileStore("remote", root=tmp_path / remote_root)
    local = TempfileStore("local", root=tmp_path / local_root)
    assert relation in refusal(local, remote, FIFOCache(depth=1))


def test_tempfile_roots_that_only_share_a_name_prefix_are_accepted(tmp_path: Path) -> None:
    local = TempfileStore("local", root=tmp_path / "cache")
    remote = TempfileStore("remote", root=tmp_path / "cache2")
    CachedStoreFactory(local, remote).build().close()


def test_the_same_bucket_under_fifo_depth_1_is_refused_and_left_whole(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket("tiers")
    client = s3_server.client()
    for name in ("a", "b", "c"):
        client.put_object(Bucket=bucket, Key=name, Body=name.encode())
    local, remote = s3_server.store(bucket), s3_server.store(bucket)
    assert "the same place" in refusal(local, remote, FIFOCache(depth=1))
    listed = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(item["Key"] for item in listed) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("local_prefix", "remote_prefix"),
    [("", "data/"), ("cache/", ""), ("data/cache/", "data/"), ("data", "data2/")],
)
def test_bucket_prefixes_that_overlap_are_refused(
    s3_server: S3Server, local_prefix: str, remote_prefix: str
) -> None:
    bucket = s3_server.new_bucket("tiers")
    local = s3_server.store(bucket, prefix=local_prefix)
    remote = s3_server.store(bucket, prefix=remote_prefix)
    assert "one lies inside the other" in refusal(local, remote)


def test_disjoint_prefixes_of_one_bucket_evict_and_clear_the_local_tier_only(
    s3_server: S3Server,
) -> None:
    bucket = s3_server.new_bucket("tiers")
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="other/kept", Body=b"not the cache's")
    local = s3_server.store(bucket, prefix="cache/")
    remote = s3_server.store(bucket, prefix="data/")
    cached = CachedStoreFactory(local, remote, FIFOCache(depth=1)).build()
    for name in ("a", "b", "c"):
        cached.put(name, name.encode() * 3)
        assert cached.get(name) == name.encode() * 3
    assert list(local.keys()) == ["c"]  # two evictions, from the local prefix
    assert cached.clear() == 1
    listed = sorted(item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert listed == ["data/a", "data/b", "data/c", "other/kept"]
    assert [remote.get(name) for name in ("a", "b", "c")] == [b"aaa", b"bbb", b"ccc"]
    cached.close()


def test_redis_stores_that_share_a_database_and_prefix_are_refused(
    redis_server: RedisServer,
) -> None:
    prefix = f"tiers-{uuid.uuid4().hex[:8]}:"
    remote = RedisStore(redis_server.host, redis_server.port, prefix=prefix)
    same = RedisStore("localhost", redis_server.port, prefix=prefix)  # one server, two names
    assert "the same place" in refusal(same, remote)
    inner = RedisStore(redis_server.host, redis_server.port, prefix=f"{prefix}local:")
    assert "one lies inside the other" in refusal(inner, remote)
    other_db = RedisStore(redis_server.host, redis_server.port, db=1, prefix=prefix)
    other_prefix = RedisStore(redis_server.host, redis_server.port, prefix=f"x{prefix}")
    for local in (other_db, other_prefix):
        CachedStoreFactory(local, remote).build().close()


def test_csf_check_refuses_one_directory_as_both_tiers_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "cache.toml"
    config.write_text(
        f'[local]\nstore = "tempfile"\nname = "c"\nroot = "{tmp_path / "shared"}"\n'
        f'[remote]\nstore = "tempfile"\nname = "c"\nroot = "{tmp_path / "shared"}"\n'
        '[policy]\nname = "fifo"\ndepth = 1\n'
    )
    out = subprocess.run(
        [*CSF, "-c", str(config), "check"], capture_output=True, text=True, env=os.environ
    )
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith("csf: error: CachedStoreFactory: the local store TempfileStore(")
    assert "keep their entries in the same place" in out.stderr
