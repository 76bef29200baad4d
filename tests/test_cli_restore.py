"""csf restore and csf warm --wait on archived objects, against moto's S3 server over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from cached_stores_factory import CachedStoreFactory
from cached_stores_factory.cli import main
from cached_stores_factory.testing.servers import S3Server

pytestmark = pytest.mark.s3

COLD = {"cold/1": "GLACIER", "cold/2": "GLACIER", "cold/3": "DEEP_ARCHIVE"}
QUICK_POLLS = ["--interval", "0.05"]


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    name = s3_server.new_bucket("restore")
    client = s3_server.client()
    for key, storage_class in COLD.items():
        client.put_object(Bucket=name, Key=key, Body=key.encode(), StorageClass=storage_class)
    client.put_object(Bucket=name, Key="warm", Body=b"warm")
    return name


@pytest.fixture
def config(tmp_path: Path, s3_server: S3Server, bucket: str) -> Path:
    path = tmp_path / "csf.toml"
    path.write_text(
        f'[local]\nstore = "tempfile"\nname = "local"\nroot = "{tmp_path / "local"}"\n'
        f'[remote]\nstore = "s3"\nbucketname = "{bucket}"\ns3_region = "eu-central-1"\n'
        f'endpoint_url = "{s3_server.endpoint_url}"\n'
        'aws_access_key_id = "testing"\naws_secret_access_key = "testing"\n'
    )
    return path


def csf(config: Path, *args: str) -> int:
    return main([*args, "-q", "-c", str(config)])


def restores_asked(s3_server: S3Server, bucket: str) -> int:
    return sum(
        1
        for m, p in s3_server.requests
        if m == "POST" and p.startswith(f"/{bucket}/") and p.endswith("?restore")
    )


def table(out: str) -> dict[str, list[str]]:
    """The restore table's rows by key."""
    return {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}


def test_restore_of_a_prefix_asks_once_per_object_and_shows_each_state(
    config: Path, s3_server: S3Server, bucket: str, capsys: pytest.CaptureFixture[str]
):
    with s3_server.restores_held(bucket):
        assert csf(config, "restore", "cold/", "--days", "2", "--tier", "Bulk") == 0
        rows = table(capsys.readouterr().out)
        assert rows == {key: [storage, "requested", "-"] for key, storage in COLD.items()}
        assert csf(config, "restore", "cold/") == 0  # again: S3 is on it, nothing is asked
        rows = table(capsys.readouterr().out)
        assert {key: row[1:3] for key, row in rows.items()} == {
            key: ["in", "progress"] for key in COLD
        }
    assert restores_asked(s3_server, bucket) == 3
    assert csf(config, "restore", "warm") == 0
    assert table(capsys.readouterr().out) == {"warm": ["STANDARD", "readable", "-"]}


def test_restore_wait_polls_until_the_object_is_readable(
    config: Path, s3_server: S3Server, capsys: pytest.CaptureFixture[str]
):
    assert csf(config, "restore", "cold/3", "--wait", *QUICK_POLLS, "--timeout", "60") == 0
    out = capsys.readouterr().out
    assert table(out)["cold/3"][:2] == ["DEEP_ARCHIVE", "requested"]
    assert CachedStoreFactory.from_config(config).build().get("cold/3") == b"cold/3"


def test_restore_wait_gives_up_at_its_timeout_naming_what_is_left(
    config: Path, s3_server: S3Server, bucket: str, capsys: pytest.CaptureFixture[str]
):
    with s3_server.restores_held(bucket):
        assert csf(config, "restore", "cold/1", "--wait", *QUICK_POLLS, "--timeout", "0.3") == 1
    err = capsys.readouterr().err
    assert "csf: restore: 'cold/1' is not restored after 0.3 s; run the command again" in err


def test_restore_of_nothing_fails(config: Path, capsys: pytest.CaptureFixture[str]):
    assert csf(config, "restore", "no/such/") == 1
    assert "no object at or under 'no/such/'" in capsys.readouterr().err


def test_warm_reports_archived_keys_and_warm_wait_restores_then_fetches_them(
    config: Path, s3_server: S3Server, bucket: str, capsys: pytest.CaptureFixture[str]
):
    assert csf(config, "warm", "cold/1", "warm") == 1
    err = capsys.readouterr().err
    assert "csf: warm: 'cold/1': s3://" in err and "is archived in GLACIER" in err
    assert restores_asked(s3_server, bucket) == 0

    assert csf(config, "warm", "cold/1", "cold/3", "warm", "--wait", *QUICK_POLLS) == 0
    assert restores_asked(s3_server, bucket) == 2
    local = CachedStoreFactory.from_config(config).local_store
    assert {key: local.get(key) for key in local} == {
        "cold/1": b"cold/1",
        "cold/3": b"cold/3",
        "warm": b"warm",
    }


def test_restore_needs_a_remote_that_keeps_archived_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = tmp_path / "memory.toml"
    config.write_text('[local]\nstore = "memory"\n[remote]\nstore = "memory"\n')
    assert csf(config, "restore", "k") == 2
    assert "keeps no archived objects: restoring needs S3" in capsys.readouterr().err
