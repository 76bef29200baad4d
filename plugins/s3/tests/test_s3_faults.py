"""S3Store through the fault proxy: retries stay bounded, damage is refused, never cached."""

from __future__ import annotations

import base64
import io
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cached_stores_factory import CachedStore, MemoryStore
from cached_stores_factory.errors import RemoteError
from cached_stores_factory.testing.faults import (
    FaultProxy,
    corrupt,
    reset,
    slow_down,
    slow_first_byte,
    truncate,
)
from cached_stores_factory.testing.servers import S3Server
from cached_stores_factory_s3 import MIN_PART_SIZE, S3Store
from cached_stores_factory_tempfile import TempfileStore

pytestmark = pytest.mark.s3

REGION = "eu-central-1"
SECRET = "s3cr3t-k3y-never-shown"
ATTEMPTS = 5  # the pinned total_max_attempts
DATA = os.urandom(300_000)
PARTS = {"multipart_threshold": MIN_PART_SIZE, "multipart_chunksize": MIN_PART_SIZE}


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Server:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    s3_server.reset()
    s3_server.client().create_bucket(
        Bucket="faults", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return s3_server


def proxied(proxy: FaultProxy, **kwargs: object) -> S3Store:
    return S3Store(
        "faults",
        s3_region=REGION,
        endpoint_url=proxy.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key=SECRET,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(s3: S3Server, fault_proxy: FaultProxy) -> Iterator[S3Store]:
    with proxied(fault_proxy) as store:
        store.put("obj", DATA)
        fault_proxy.clear()
        yield store


def gets(proxy: FaultProxy) -> list[dict[str, str]]:
    return [r.headers for r in proxy.requests if r.method == "GET"]


# -- checksums ---------------------------------------------------------------------------------


def test_uploads_carry_a_crc32_checksum(s3: S3Server, fault_proxy: FaultProxy):
    with proxied(fault_proxy) as store:
        store.put("small", b"payload")
    (put,) = [r for r in fault_proxy.requests if r.method == "PUT"]
    assert "x-amz-checksum-crc32" in put.headers or "crc32" in put.headers.get("x-amz-trailer", "")
    head = s3.client().head_object(Bucket="faults", Key="small", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"]


def test_a_body_damaged_in_transit_is_refused_with_remote_error(
    store: S3Store, fault_proxy: FaultProxy
):
    fault_proxy.plan(corrupt(150_000), method="GET")
    with pytest.raises(RemoteError, match=r"s3://faults/obj.*checksum"):
        store.get("obj")
    assert store.get("obj") == DATA  # the next read is clean


def test_a_damaged_body_never_becomes_a_local_entry(
    store: S3Store, fault_proxy: FaultProxy, tmp_path: Path
):
    local = TempfileStore("local", root=tmp_path / "local")
    cached = CachedStore(local, store)
    fault_proxy.plan(corrupt(150_000), method="GET", times=10)
    with pytest.raises(RemoteError):
        cached.get("obj")
    assert "obj" not in local


MULTIPART = 2 * MIN_PART_SIZE + 1000  # three parts of MIN_PART_SIZE at most
BIG = os.urandom(MULTIPART)


def write_with_library(s3: S3Server, key: str, data: bytes) -> None:
    with s3.store("faults", **PARTS) as store:
        store.put(key, data)


def write_with_boto3(
    s3: S3Server, key: str, data: bytes, checksums: str = "when_supported"
) -> None:
    """As another program would: boto3's managed upload (composite checksums in parts)."""
    config = TransferConfig(multipart_threshold=MIN_PART_SIZE, multipart_chunksize=MIN_PART_SIZE)
    client = s3.client(config=Config(request_checksum_calculation=checksums))
    client.upload_fileobj(io.BytesIO(data), "faults", key, Config=config)


def write_with_boto3_without_checksums(s3: S3Server, key: str, data: bytes) -> None:
    """As an older program would: no checksums at all, only the ETag (an MD5, or MD5s)."""
    write_with_boto3(s3, key, data, checksums="when_required")


@pytest.mark.parametrize(
    "writer", [write_with_library, write_with_boto3, write_with_boto3_without_checksums]
)
@pytest.mark.parametrize(
    ("data", "offset"), [(DATA, 150_000), (BIG, MIN_PART_SIZE + 7)], ids=["single", "multipart"]
)
def test_a_byte_flipped_in_transit_is_never_served_nor_cached(
    s3: S3Server,
    fault_proxy: FaultProxy,
    tmp_path: Path,
    writer: Callable[[S3Server, str, bytes], None],
    data: bytes,
    offset: int,
):
    writer(s3, "obj", data)
    with proxied(fault_proxy) as store:
        local = TempfileStore("local", root=tmp_path / "local")
        cached = CachedStore(local, store)
        fault_proxy.plan(corrupt(offset), method="GET", path_contains="/obj", times=3)
        for _ in range(3):
            with pytest.raises(RemoteError, match=r"s3://faults/obj.*(checksum|ETag)"):
                cached.get("obj")
            assert "obj" not in local
        assert cached.get("obj") == data  # the network heals: the right bytes, cached
        assert local.get("obj") == data
        assert store.unverified_reads == 0


def test_multipart_uploads_carry_a_full_object_crc32(s3: S3Server):
    write_with_library(s3, "big", BIG)
    head = s3.client().head_object(Bucket="faults", Key="big", ChecksumMode="ENABLED")
    assert head["ChecksumType"] == "FULL_OBJECT"
    assert head["ChecksumCRC32"] == base64.b64encode(zlib.crc32(BIG).to_bytes(4, "big")).decode()
    assert head["ETag"].endswith('-3"')


def test_a_read_no_checksum_covers_is_counted_unverified(s3: S3Server, fault_proxy: FaultProxy):
    # SSE-KMS: the ETag is no MD5; written without a checksum, nothing covers the bytes.
    plain = s3.client(config=Config(request_checksum_calculation="when_required"))
    plain.put_object(Bucket="faults", Key="kms", Body=DATA, ServerSideEncryption="aws:kms")
    with proxied(fault_proxy) as store:
        assert store.get("kms") == DATA
        assert store.unverified_reads == 1
        store.put("crc", DATA)
        assert store.get("crc") == DATA
        with store.open_range("crc", 0, 10) as entry:  # S3 sends no checksum for a range
            assert entry.read() == DATA[:10]
        assert store.unverified_reads == 2


# -- retries: bounded, then a clear RemoteError ---------------------------------------------


def test_slow_down_is_retried_by_botocore(store: S3Store, fault_proxy: FaultProxy):
    fault_proxy.plan(slow_down(), method="GET", times=2)
    assert store.get("obj") == DATA
    assert [r.status for r in fault_proxy.requests] == [503, 503, 200]


@pytest.mark.parametrize("fault", [slow_down(), reset()], ids=["503", "reset"])
def test_retries_run_out_after_five_attempts_with_a_remote_error(
    s3: S3Server, fault_proxy: FaultProxy, fault: object
):
    with proxied(fault_proxy) as store:
        fault_proxy.plan(fault, times=100)  # type: ignore[arg-type]
        with pytest.raises(RemoteError) as caught:
            store.get("obj")
    assert fault_proxy.count() == ATTEMPTS
    assert "s3://faults/obj" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None


def test_a_reset_connection_is_retried(store: S3Store, fault_proxy: FaultProxy):
    fault_proxy.plan(reset(), method="GET", times=2)
    assert store.get("obj") == DATA
    assert fault_proxy.count("GET") == 3


def test_a_slow_first_byte_past_the_read_timeout_is_retried(s3: S3Server, fault_proxy: FaultProxy):
    with proxied(fault_proxy, config=Config(read_timeout=0.3)) as store:
        store.put("obj", DATA)
        fault_proxy.clear()
        fault_proxy.plan(slow_first_byte(1.0), method="GET")
        assert store.get("obj") == DATA
    assert fault_proxy.count("GET") == 2


# -- a body that breaks off mid-stream ---------------------------------------------------------


def test_a_truncated_body_is_resumed_with_if_match_on_the_first_etag(
    store: S3Store, fault_proxy: FaultProxy
):
    etag = store.stat("obj").etag
    fault_proxy.clear()
    fault_proxy.plan(truncate(100_000), method="GET")
    assert store.get("obj") == DATA
    first, resumed = gets(fault_proxy)
    assert "range" not in first
    assert resumed["if-match"] == etag
    start = int(resumed["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 100_000


def test_a_truncated_ranged_body_resumes_within_its_range(store: S3Store, fault_proxy: FaultProxy):
    etag = store.stat("obj").etag
    fault_proxy.clear()
    fault_proxy.plan(truncate(50_000), method="GET")
    with store.open_range("obj", 1_000, 151_000, if_match=etag) as entry:
        assert entry.read() == DATA[1_000:151_000]
    first, resumed = gets(fault_proxy)
    assert first["range"] == "bytes=1000-150999"
    assert resumed["if-match"] == etag
    start, _, last = resumed["range"].removeprefix("bytes=").partition("-")
    assert 1_000 < int(start) <= 51_000 and last == "150999"


def test_a_resumed_body_is_checked_against_the_whole_objects_checksum(
    store: S3Store, fault_proxy: FaultProxy
):
    fault_proxy.plan(truncate(100_000), method="GET")
    fault_proxy.plan(corrupt(5_000), method="GET")  # the ranged GET that resumes it
    with pytest.raises(RemoteError, match="checksum does not match"):
        store.get("obj")
    assert gets(fault_proxy)[-1]["range"]
    assert store.get("obj") == DATA


def test_a_body_that_keeps_breaking_fails_cleanly(store: S3Store, fault_proxy: FaultProxy):
    fault_proxy.plan(truncate(50_000), method="GET", times=10)
    with pytest.raises(RemoteError, match="broke off after"):
        store.get("obj")
    assert fault_proxy.count("GET") == 3  # the GET and two ranged resumes, then no more


def test_a_version_changed_mid_read_is_never_spliced(
    store: S3Store, fault_proxy: FaultProxy, s3: S3Server
):
    fault_proxy.plan(truncate(100_000), method="GET")
    with store.open_read("obj") as entry:
        s3.client().put_object(Bucket="faults", Key="obj", Body=b"N" * len(DATA))
        with pytest.raises(RemoteError, match="changed before the rest could be read"):
            entry.read()
    assert gets(fault_proxy)[-1]["if-match"]


def test_a_truncated_body_never_becomes_a_short_local_entry(
    store: S3Store, fault_proxy: FaultProxy, tmp_path: Path
):
    local = TempfileStore("local", root=tmp_path / "local")
    cached = CachedStore(local, store)
    fault_proxy.plan(truncate(50_000), method="GET", times=100)
    with pytest.raises(RemoteError):
        cached.get("obj")
    assert "obj" not in local
    fault_proxy.clear()
    assert cached.get("obj") == DATA
    assert local.get("obj") == DATA


# -- revalidation: a conditional GET --------------------------------------------------------


def test_an_unchanged_object_answers_304_with_no_body(
    store: S3Store, fault_proxy: FaultProxy, s3: S3Server
):
    etag = store.stat("obj").etag
    assert etag is not None
    sent_before = s3.bytes_sent("GET")
    assert store.open_read_if_changed("obj", etag) is None
    assert s3.bytes_sent("GET") == sent_before
    (request,) = [r for r in fault_proxy.requests if r.method == "GET"]
    assert (request.status, request.headers["if-none-match"]) == (304, etag)


def test_a_changed_object_is_opened_by_the_conditional_read(store: S3Store, s3: S3Server):
    etag = store.stat("obj").etag
    assert etag is not None
    s3.client().put_object(Bucket="faults", Key="obj", Body=b"new version")
    entry = store.open_read_if_changed("obj", etag)
    assert entry is not None
    with entry:
        assert entry.read() == b"new version"
        assert entry.stat.etag != etag


# -- any mix of faults: the whole object or a RemoteError, and never a bad local entry ---------

FAULTS = st.sampled_from(
    [slow_down(), reset(), truncate(1), truncate(150_000), corrupt(0), corrupt(299_999)]
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(faults=st.lists(FAULTS, max_size=3))
def test_any_mix_of_faults_yields_the_object_or_a_remote_error_never_a_bad_entry(
    store: S3Store, fault_proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory, faults
):
    local = TempfileStore("local", root=tmp_path_factory.mktemp("local"))
    cached = CachedStore(local, store)
    fault_proxy.clear()
    for fault in faults:
        fault_proxy.plan(fault, method="GET")
    try:
        data = cached.get("obj")
    except RemoteError:
        assert "obj" not in local
    else:
        assert data == DATA
    if "obj" in local:
        assert local.get("obj") == DATA
    assert fault_proxy.count("GET") <= 1 + len(faults) + 2  # a retry or a resume per fault


def test_a_cached_store_counts_the_remote_s_unverified_reads(s3: S3Server, fault_proxy: FaultProxy):
    plain = s3.client(config=Config(request_checksum_calculation="when_required"))
    plain.put_object(Bucket="faults", Key="kms", Body=DATA, ServerSideEncryption="aws:kms")
    with proxied(fault_proxy) as store:
        cached = CachedStore(MemoryStore(), store)
        assert cached.stats()["unverified_reads"] == 0
        assert cached.get("kms") == DATA
        assert cached.stats()["unverified_reads"] == 1
    assert "unverified_reads" not in CachedStore(MemoryStore(), MemoryStore()).stats()
