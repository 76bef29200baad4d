"""Archived objects (S3 Glacier, Deep Archive) against moto's S3 server: errors and restores."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from cached_stores_factory import CachedStore, MemoryStore
from cached_stores_factory.caches.TTL_cache import TTLCache
from cached_stores_factory.errors import ConfigError, ObjectArchivedError, RemoteError
from cached_stores_factory.testing.faults import FaultProxy, s3_error
from cached_stores_factory.testing.servers import S3Server
from cached_stores_factory_s3 import S3Store

pytestmark = pytest.mark.s3

DATA = b"cold bytes\n"


@pytest.fixture
def bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    name = s3_server.new_bucket("archive")
    client = s3_server.client()
    client.put_object(Bucket=name, Key="cold/a", Body=DATA, StorageClass="GLACIER")
    client.put_object(Bucket=name, Key="cold/b", Body=DATA, StorageClass="DEEP_ARCHIVE")
    client.put_object(Bucket=name, Key="warm", Body=DATA)
    return name


@pytest.fixture
def store(s3_server: S3Server, bucket: str) -> Iterator[S3Store]:
    with s3_server.store(bucket) as store:
        yield store


def restoring_through(proxy: FaultProxy, bucket: str) -> S3Store:
    """A store with `restore_days` that reaches the server through the fault proxy."""
    return S3Store(
        bucket,
        s3_region="eu-central-1",
        endpoint_url=proxy.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        restore_days=1,
    )


def restores_asked(s3_server: S3Server, bucket: str, key: str) -> int:
    return s3_server.count("POST", f"/{bucket}/{key}?restore")


@pytest.mark.parametrize(
    ("key", "storage_class"), [("cold/a", "GLACIER"), ("cold/b", "DEEP_ARCHIVE")]
)
def test_a_read_of_an_archived_object_names_key_class_and_restore_state(
    store: S3Store, s3_server: S3Server, bucket: str, key: str, storage_class: str
):
    with pytest.raises(ObjectArchivedError) as caught:
        store.get(key)
    error = caught.value
    assert isinstance(error, RemoteError)
    assert (error.key, error.storage_class, error.restore) == (key, storage_class, "none")
    assert not error.restore_in_progress
    assert str(error) == (
        f"s3://{bucket}/{key} is archived in {storage_class}: no restore is in progress; "
        f"set restore_days to have reads restore it, or run: csf restore {key}"
    )
    assert restores_asked(s3_server, bucket, key) == 0  # no restore_days: nothing is asked for


def test_restore_days_asks_once_across_stores_and_the_restored_object_is_cached(
    s3_server: S3Server, bucket: str
):
    # Two stores, each with its own client, as two processes would have.
    first = s3_server.store(bucket, restore_days=3, restore_tier="Bulk")
    second = s3_server.store(bucket, restore_days=3, restore_tier="Bulk")
    cached = CachedStore(MemoryStore(), second)
    with s3_server.restores_held(bucket):
        with pytest.raises(ObjectArchivedError, match="a restore was requested by this read") as a:
            first.get("cold/a")
        assert a.value.restore == "requested" and a.value.restore_in_progress
        assert "for 3 day(s) (Bulk tier" in str(a.value)
        with pytest.raises(ObjectArchivedError, match="a restore is in progress") as b:
            cached.get("cold/a")
        assert b.value.restore == "in progress"
        assert restores_asked(s3_server, bucket, "cold/a") == 1
        state = first.restore_state("cold/a")
        assert (state.state, state.readable) == ("in progress", False)
    # S3 reports the restore done: the next read fetches and caches the object.
    state = first.restore_state("cold/a")
    assert state.readable and state.state == "done"
    assert state.expiry is not None
    expiry = parsedate_to_datetime(state.expiry)
    assert timedelta(days=2) < expiry - datetime.now(UTC) <= timedelta(days=3)
    assert cached.get("cold/a") == DATA
    gets = s3_server.count("GET", "/cold/a")
    assert cached.get("cold/a") == DATA
    assert s3_server.count("GET", "/cold/a") == gets  # served by the local copy
    assert restores_asked(s3_server, bucket, "cold/a") == 1


def test_an_archived_object_is_no_outage_of_the_remote(
    store: S3Store, caplog: pytest.LogCaptureFixture
):
    cached = CachedStore(MemoryStore(), store)
    with caplog.at_level(logging.WARNING, logger="cached_stores_factory"):
        for _ in range(3):
            with pytest.raises(ObjectArchivedError):
                cached.get("cold/a")
        assert cached.get("warm") == DATA
    assert [r.getMessage() for r in caplog.records if "failed" in r.getMessage()] == []
    assert not cached.remote_outage.skipping()


def test_request_restore_leaves_readable_and_restoring_objects_alone(
    store: S3Store, s3_server: S3Server, bucket: str
):
    assert store.request_restore("warm").state == "readable"
    with s3_server.restores_held(bucket):
        assert store.request_restore("cold/b", days=1, tier="Standard").state == "requested"
        assert store.request_restore("cold/b").state == "in progress"
    assert restores_asked(s3_server, bucket, "cold/b") == 1
    assert store.request_restore("cold/b").state == "done"
    assert store.get("cold/b") == DATA


def test_a_restore_another_process_asked_for_first_is_reported_in_progress(
    s3_server: S3Server, bucket: str, fault_proxy: FaultProxy
):
    # Both processes' HEADs found no restore; S3 answers the second request 409.
    fault_proxy.plan(s3_error(409, "RestoreAlreadyInProgress"), method="POST")
    store = restoring_through(fault_proxy, bucket)
    with pytest.raises(ObjectArchivedError, match="a restore is in progress") as caught:
        store.get("cold/a")
    assert caught.value.restore == "in progress"
    assert [r.status for r in fault_proxy.requests] == [403, 200, 409]  # GET, HEAD, restore
    assert restores_asked(s3_server, bucket, "cold/a") == 0


def test_a_refused_restore_request_is_still_an_archived_object_not_an_outage(
    s3_server: S3Server, bucket: str, fault_proxy: FaultProxy
):
    fault_proxy.plan(s3_error(403, "AccessDenied"), method="POST")
    store = restoring_through(fault_proxy, bucket)
    with pytest.raises(ObjectArchivedError, match=r"restoring failed: .*AccessDenied") as caught:
        store.get("cold/a")
    assert caught.value.restore == "none"


def test_an_expired_copy_of_an_object_archived_since_is_revalidated_without_a_restore(
    s3_server: S3Server, bucket: str
):
    skew = [0.0]
    policy = TTLCache(interval=30.0, clock=lambda: time.time() + skew[0])
    cached = CachedStore(MemoryStore(), s3_server.store(bucket, restore_days=1), policy)
    assert cached.get("warm") == DATA
    # A lifecycle rule moves the object to Glacier: same bytes, same ETag.
    s3_server.client().copy_object(
        Bucket=bucket,
        Key="warm",
        CopySource={"Bucket": bucket, "Key": "warm"},
        StorageClass="GLACIER",
    )
    skew[0] = 31.0
    assert cached.get("warm") == DATA
    assert cached.stats()["revalidated"] == 1
    assert restores_asked(s3_server, bucket, "warm") == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"restore_days": 0}, "'restore_days': must be a whole number >= 1, not 0"),
        (
            {"restore_tier": "Fast"},
            "'restore_tier': must be one of 'Standard', 'Bulk', 'Expedited', not 'Fast'",
        ),
    ],
)
def test_bad_restore_settings_are_config_errors(arguments: dict[str, object], message: str):
    with pytest.raises(ConfigError, match=message):
        S3Store("bucket", **arguments)  # type: ignore[arg-type]
