"""S3Store against moto's S3 HTTP server: the conformance suite, request counts, profiles."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.config import Config

from cached_stores_factory import CachedStoreFactory, MemoryStore
from cached_stores_factory.caches.TTL_cache import TTLCache
from cached_stores_factory.errors import (
    ConfigError,
    EntryChangedError,
    KeyNotFoundError,
    RemoteError,
    StoreError,
)
from cached_stores_factory.plugins import registry
from cached_stores_factory.testing.servers import S3Server, free_port
from cached_stores_factory.testing.stores import ChunkedStream, StoreConformance
from cached_stores_factory_s3 import MIN_PART_SIZE, S3Store
from cached_stores_factory_tempfile import TempfileStore

pytestmark = pytest.mark.s3

REGION = "eu-central-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No AWS settings from this machine: an empty config and credentials file.

    Module-scoped, because S3Store shares one boto3 session per profile and these files.
    """
    folder = tmp_path_factory.mktemp("aws")
    config = folder / "aws-config"
    config.write_text("")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_CONFIG_FILE", str(config))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "aws-credentials"))
        for name in (
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
        ):
            patch.delenv(name, raising=False)
        yield config


def make_store(server: S3Server, bucket: str = "bucket", **kwargs: object) -> S3Store:
    return S3Store(
        bucket,
        s3_region=REGION,
        endpoint_url=server.endpoint_url,
        **CREDENTIALS,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def s3(s3_server: S3Server, aws_env: Path) -> S3Server:
    s3_server.reset()
    s3_server.client().create_bucket(
        Bucket="bucket", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return s3_server


@pytest.fixture
def store(s3: S3Server) -> Iterator[S3Store]:
    with make_store(s3) as store:
        s3.requests.clear()
        yield store


class TestS3StoreConformance(StoreConformance):
    large_size = 2 * MIN_PART_SIZE + 123  # above the 5 MiB threshold below: multipart

    @pytest.fixture
    def store(self, s3: S3Server) -> Iterator[S3Store]:
        with make_store(
            s3, multipart_threshold=MIN_PART_SIZE, multipart_chunksize=MIN_PART_SIZE
        ) as store:
            yield store


def test_registered_under_s3_by_its_distribution():
    component = registry.get("store", "s3")
    assert component.factory is S3Store
    assert component.distribution == "cached-stores-factory-s3"


def test_loading_the_plugin_does_not_import_boto3():
    code = (
        "import sys, cached_stores_factory_s3; "
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_miss_is_exactly_one_get_and_no_head(store: S3Store, s3: S3Server):
    with pytest.raises(KeyNotFoundError) as caught:
        store.open_read("missing/key")
    assert isinstance(caught.value, KeyError)
    assert s3.requests == [("GET", "/bucket/missing/key")]


def test_a_read_is_one_streaming_get(store: S3Store, s3: S3Server):
    store.put("obj", b"0123456789" * 1000)
    s3.requests.clear()
    with store.open_read("obj") as entry:
        assert entry.read(10) == b"0123456789"
        assert len(entry.read()) == 9990
        assert entry.stat.size == 10_000
        assert entry.stat.etag and entry.stat.etag.startswith('"')
    assert s3.count() == 1
    assert s3.count("GET", "/bucket/obj") == 1


def test_through_the_engine_a_remote_miss_costs_one_get(store: S3Store, s3: S3Server):
    store.put("path/my.file", b"remote")
    cached = CachedStoreFactory(MemoryStore(), store).build()
    s3.requests.clear()
    assert cached.get("path/my.file") == b"remote"
    assert cached.get("path/my.file") == b"remote"
    assert s3.requests == [("GET", "/bucket/path/my.file")]


def test_stat_is_one_head_with_etag_and_last_modified(store: S3Store, s3: S3Server):
    written = store.put_stream("k", io.BytesIO(b"abc"))
    s3.requests.clear()
    found = store.stat("k")
    assert s3.requests == [("HEAD", "/bucket/k")]
    assert found.size == 3
    assert found.etag == written.etag == '"900150983cd24fb0d6963f7d28e17f72"'  # md5 of abc
    assert abs(found.modified - written.modified) < 5


def test_origin_etag_is_kept_when_the_bucket_is_a_cache(store: S3Store):
    store.put_stream("k", io.BytesIO(b"abc"), etag='"origin-etag"')
    assert store.stat("k").etag == '"origin-etag"'
    with store.open_read("k") as entry:
        assert entry.stat.etag == '"origin-etag"'


def test_small_writes_are_one_put(store: S3Store, s3: S3Server):
    store.put_stream("small", io.BytesIO(b"x" * 1000))
    assert s3.requests == [("PUT", "/bucket/small")]


@pytest.mark.parametrize("seekable", [True, False])
def test_large_writes_use_multipart(s3: S3Server, seekable: bool):
    size = 2 * MIN_PART_SIZE + 1000
    with make_store(
        s3, multipart_threshold=MIN_PART_SIZE, multipart_chunksize=MIN_PART_SIZE
    ) as store:
        source = ChunkedStream(size, seed=1)
        stream = io.BytesIO(source.read()) if seekable else source
        s3.requests.clear()
        stat = store.put_stream("big", stream)  # type: ignore[arg-type]
        assert s3.count("POST", "/bucket/big?uploads") == 1
        assert s3.count("PUT", "partNumber=") == 3
        assert s3.count("POST", "uploadId=") == 1  # complete
        assert s3.count("PUT", "/bucket/big") == 3  # the parts, no single PUT
        assert stat.size == size
        assert stat.etag and stat.etag.endswith('-3"')
        with store.open_read("big") as entry:
            data = entry.read()
        assert len(data) == size


def test_endpoint_and_region_come_from_the_profile(s3: S3Server, aws_env: Path):
    aws_env.write_text(
        "[profile my_profile]\n"
        f"endpoint_url = {s3.endpoint_url}\n"
        f"region = {REGION}\n"
        "aws_access_key_id = testing\n"
        "aws_secret_access_key = testing\n"
    )
    with S3Store(bucketname="bucket", s3_profile="my_profile") as store:
        assert store.endpoint_url == s3.endpoint_url
        assert store.region == REGION
        store.put("via/profile", b"yes")
    assert s3.client().get_object(Bucket="bucket", Key="via/profile")["Body"].read() == b"yes"


def test_client_settings_are_pinned(store: S3Store):
    config = store._client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert (config.connect_timeout, config.read_timeout) == (5, 60)
    assert config.request_checksum_calculation == "when_supported"
    assert config.response_checksum_validation == "when_supported"


def test_client_settings_are_arguments(s3: S3Server):
    with make_store(
        s3, connect_timeout=2, read_timeout=3.5, max_attempts=2, retry_mode="adaptive"
    ) as store:
        config = store._client.meta.config
        assert (config.connect_timeout, config.read_timeout) == (2, 3.5)
        assert config.retries == {"mode": "adaptive", "total_max_attempts": 2}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"read_timeout": 0}, "'read_timeout': must be a positive number, not 0"),
        ({"connect_timeout": "5"}, "'connect_timeout': must be a positive number, not '5'"),
        ({"max_attempts": 0}, "'max_attempts': must be a whole number >= 1, not 0"),
        (
            {"retry_mode": "eager"},
            "'retry_mode': must be one of 'standard', 'adaptive', 'legacy', not 'eager'",
        ),
    ],
)
def test_bad_client_settings_are_config_errors_before_any_connection(
    arguments: dict[str, object], message: str
):
    with pytest.raises(ConfigError, match=message):
        S3Store("bucket", endpoint_url="http://127.0.0.1:9", **arguments)  # type: ignore[arg-type]


def test_a_write_keeps_its_own_etag_when_another_writer_follows_at_once(
    s3: S3Server, tmp_path: Path
):
    skew = [0.0]
    policy = TTLCache(interval=30.0, clock=lambda: time.time() + skew[0])
    with make_store(
        s3, multipart_threshold=MIN_PART_SIZE, multipart_chunksize=MIN_PART_SIZE
    ) as remote:
        other = s3.client()

        def another_writer(**_: object) -> None:
            other.put_object(Bucket="bucket", Key="k", Body=b"theirs")

        # Another writer's PUT lands right after our upload completes, every time.
        remote._client.meta.events.register("after-call.s3.CompleteMultipartUpload", another_writer)
        cached = CachedStoreFactory(
            TempfileStore("local", root=tmp_path / "local"), remote, policy
        ).build()
        ours = ChunkedStream(2 * MIN_PART_SIZE + 10, seed=3).read()
        written = cached.put_stream("k", io.BytesIO(ours))
        theirs = other.head_object(Bucket="bucket", Key="k")["ETag"]
        assert written.etag is not None and written.etag.endswith('-3"')
        assert written.etag != theirs
        skew[0] = 31.0  # the copy expires: revalidating it must find the other version
        assert cached.get("k") == b"theirs"


def test_checksums_false_sends_them_only_where_required(s3: S3Server):
    with make_store(s3, checksums=False) as store:
        config = store._client.meta.config
        assert config.request_checksum_calculation == "when_required"
        assert config.response_checksum_validation == "when_required"


def test_a_config_argument_is_merged_over_the_pinned_one(s3: S3Server):
    with make_store(s3, config=Config(read_timeout=7)) as store:
        config = store._client.meta.config
        assert config.read_timeout == 7
        assert config.retries == {"mode": "standard", "total_max_attempts": 5}


def test_unknown_profile_is_a_config_error(aws_env: Path):
    with pytest.raises(ConfigError, match="no_such_profile"):
        S3Store("bucket", s3_profile="no_such_profile")


def test_missing_bucket_is_a_store_error_naming_it(s3: S3Server):
    with (
        make_store(s3, bucket="no-such-bucket") as store,
        pytest.raises(StoreError, match="no-such-bucket"),
    ):
        store.put("k", b"v")


def test_a_prefix_confines_the_store(s3: S3Server):
    client = s3.client()
    client.put_object(Bucket="bucket", Key="outside", Body=b"o")
    client.put_object(Bucket="bucket", Key="tenantless/x", Body=b"o")
    with make_store(s3, prefix="tenant/") as store:
        store.put("a/b", b"inside")
        assert client.get_object(Bucket="bucket", Key="tenant/a/b")["Body"].read() == b"inside"
        assert list(store.keys()) == ["a/b"]
        assert "outside" not in store
        assert store.clear() == 1
    remaining = [o["Key"] for o in client.list_objects_v2(Bucket="bucket")["Contents"]]
    assert sorted(remaining) == ["outside", "tenantless/x"]


def test_unreachable_endpoint_is_a_store_error_without_secrets(aws_env: Path):
    secret = "s3cr3t-k3y-never-shown"
    store = S3Store(
        "bucket",
        s3_region=REGION,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=secret,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    assert secret not in repr(store)
    with pytest.raises(StoreError) as caught:
        store.get("k")
    assert "s3://bucket/k" in str(caught.value)
    assert secret not in str(caught.value)


def test_folder_markers_are_not_keys(store: S3Store, s3: S3Server):
    s3.client().put_object(Bucket="bucket", Key="dir/", Body=b"")
    store.put("dir/file", b"x")
    assert list(store.keys()) == ["dir/file"]


def test_multipart_chunks_below_the_s3_minimum_are_refused():
    with pytest.raises(ConfigError, match="multipart_chunksize"):
        S3Store("bucket", multipart_chunksize=1024)


def test_works_as_the_local_store(s3: S3Server):
    client = s3.client()
    client.create_bucket(Bucket="remote", CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_object(Bucket="remote", Key="path/my.file", Body=b"glacier bytes")
    with make_store(s3) as frequent, make_store(s3, bucket="remote") as infrequent:
        cached = CachedStoreFactory(frequent, infrequent).build()
        s3.requests.clear()
        assert cached.get("path/my.file") == b"glacier bytes"
        assert s3.count("GET", "/remote/path/my.file") == 1
        assert cached.get("path/my.file") == b"glacier bytes"
        assert s3.count("GET", "/remote/") == 1
        assert s3.count("GET", "/bucket/path/my.file") >= 1
        assert frequent.stat("path/my.file").etag == infrequent.stat("path/my.file").etag


def test_open_range_is_one_ranged_get_that_refuses_a_changed_object(
    s3: S3Server, store: S3Store
) -> None:
    body = bytes(range(256)) * 40
    store.put("big", body)
    before = s3.count()
    with store.open_range("big", 100, 1100) as entry:
        assert entry.read() == body[100:1100]
        assert entry.stat.size == len(body) and entry.stat.etag
        etag = entry.stat.etag
    assert s3.requests[before:] == [("GET", "/bucket/big")]
    assert s3.bytes_sent("GET", "/bucket/big") == 1000  # counted at the server
    with store.open_range("big", len(body) - 5, len(body) + 100, if_match=etag) as entry:
        assert entry.read() == body[-5:]
    with store.open_range("big", len(body) + 10, len(body) + 20, if_match=etag) as entry:
        assert entry.read() == b"" and entry.stat.size == len(body)
    store.put("big", body[::-1])
    with pytest.raises(EntryChangedError, match="changed while it was read"):
        store.open_range("big", 0, 10, if_match=etag)
    with pytest.raises(KeyNotFoundError):
        store.open_range("missing", 0, 10)
    store.put("empty", b"")
    with store.open_range("empty", 0, 10) as entry:
        assert entry.read() == b"" and entry.stat.size == 0


def test_a_seek_costs_one_ranged_get_on_the_next_read_and_never_splices_versions(
    s3: S3Server, store: S3Store
) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, four read buffers
    store.put("big", body)
    s3.requests.clear()
    with store.open_read("big") as entry:
        stream = entry.stream
        assert stream.read(10) == body[:10]
        assert stream.seek(len(body) + 5) == len(body) + 5  # past the end: no request
        assert stream.read() == b""
        assert stream.seek(-100, io.SEEK_END) == len(body) - 100
        assert s3.count() == 1
        assert stream.read() == body[-100:]
        assert s3.count("GET", "/bucket/big") == 2
        assert s3.statuses("GET")[-1] == 206
        assert stream.seek(3) == 3
        assert stream.read(5) == body[3:8]
        store.put("big", body[::-1])
        stream.seek(900_000)
        with pytest.raises(RemoteError, match="the object changed before the rest could be read"):
            stream.read(10)


def test_a_listing_gives_each_keys_stat_with_no_head(store: S3Store, s3: S3Server):
    store.put("dir/a", b"1")
    store.put("dir/b", b"22")
    s3.client().put_object(Bucket="bucket", Key="dir/", Body=b"")  # a folder marker
    s3.requests.clear()
    listed = dict(store.listing("dir/"))
    assert s3.count("HEAD") == 0 and s3.count("GET") == 1
    assert sorted(listed) == ["dir/a", "dir/b"]
    for key, stat in listed.items():
        head = store.stat(key)
        assert (stat.size, stat.etag) == (head.size, head.etag)
        assert stat.modified == pytest.approx(head.modified)
