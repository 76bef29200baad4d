"""The csf command against real servers: checks before connecting, and every subcommand on S3."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cached_stores_factory import CachedStoreFactory
from cached_stores_factory.cli import main
from cached_stores_factory.testing.servers import S3Server

CSF = [sys.executable, "-m", "cached_stores_factory.cli"]


@pytest.mark.parametrize(
    ("remote", "message"),
    [
        (
            'store = "redis"\nport = "six"',
            "[remote] store 'redis' argument 'port': must be an int, not str 'six'",
        ),
        (
            'store = "s3"\nbucketname = "b"\naws_access_key_id = 5',
            "[remote] store 's3' argument 'aws_access_key_id': must be a str, not int",
        ),
        (
            'store = "s3"\nbucketname = "b"\naws_secret_access_key = 12345678',
            "[remote] store 's3' argument 'aws_secret_access_key': must be a str, not int",
        ),
        # Values of the right type but out of range.
        (
            'store = "redis"\ndb = -1',
            "[remote] store 'redis' argument 'db': must be a whole number >= 0, not -1",
        ),
        (
            'store = "redis"\nport = -1',
            "[remote] store 'redis' argument 'port': must be a whole number from 1 to 65535, "
            "not -1",
        ),
        (
            'store = "redis"\nport = "${CSF_TEST_PORT}"',
            "[remote] store 'redis' argument 'port': must be a whole number from 1 to 65535, "
            "not 65536",
        ),
        (
            'store = "redis"\nsocket_timeout = 0',
            "[remote] store 'redis' argument 'socket_timeout': must be a positive number, not 0",
        ),
        (
            'store = "redis"\nex = -1.5',
            "[remote] store 'redis' argument 'ex': must be a positive number, not -1.5",
        ),
        (
            'store = "s3"\nbucketname = "b"\nmultipart_chunksize = 1024',
            "[remote] store 's3' argument 'multipart_chunksize': must be a whole number "
            ">= 5242880, not 1024",
        ),
    ],
)
def test_check_reports_a_bad_argument_in_one_line_before_connecting(
    tmp_path: Path, remote: str, message: str
) -> None:
    config = tmp_path / "f.toml"
    config.write_text(f'[local]\nstore = "memory"\n[remote]\n{remote}\n')
    out = subprocess.run(
        [*CSF, "-c", str(config), "check"],
        capture_output=True,
        text=True,
        env={**os.environ, "CSF_TEST_PORT": "65536"},
    )
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == f"csf: error: {config}: {message}\n"
    assert "12345678" not in out.stderr


@pytest.mark.parametrize(
    ("bucket", "code", "problem"),
    [
        # Refused when the config is read, naming its place.
        ("no spaces allowed", 2, "[remote] store 's3': S3Store bucket name 'no spaces allowed'"),
        # Refused by botocore, whose message spans several lines: one line here.
        ("arn:not-an-arn", 1, "s3://arn:not-an-arn/k: Parameter validation failed: Invalid"),
    ],
)
def test_a_bad_bucket_name_is_one_line_without_the_secret(
    tmp_path: Path, bucket: str, code: int, problem: str
) -> None:
    config = tmp_path / "f.toml"
    config.write_text(
        f'[local]\nstore = "memory"\n[remote]\nstore = "s3"\nbucketname = "{bucket}"\n'
        'endpoint_url = "http://127.0.0.1:9"\naws_access_key_id = "k"\n'
        'aws_secret_access_key = "hidden-value"\n'
    )
    out = subprocess.run(
        [*CSF, "-q", "-c", str(config), "cat", "k"], capture_output=True, text=True
    )
    assert out.returncode == code
    error = out.stderr.splitlines()[-1]
    assert error.startswith("csf: error: ") and problem in error
    assert "hidden-value" not in out.stderr


def test_a_remote_error_is_printed_once(tmp_path: Path) -> None:
    """The outage warning and the error were the same message twice; now one line says it."""
    config = tmp_path / "f.toml"
    config.write_text(
        '[local]\nstore = "memory"\n[remote]\nstore = "s3"\nbucketname = "b"\n'
        'endpoint_url = "http://127.0.0.1:9"\naws_access_key_id = "k"\n'
        'aws_secret_access_key = "s"\n'
    )
    out = subprocess.run([*CSF, "-c", str(config), "cat", "k"], capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr.splitlines() == [
        'csf: error: s3://b/k: Could not connect to the endpoint URL: "http://127.0.0.1:9/b/k"'
    ]


def test_a_warning_of_a_command_that_succeeds_is_still_printed(tmp_path: Path) -> None:
    """A down local Redis: the read goes to the remote, and the warning says why, once."""
    config = tmp_path / "f.toml"
    config.write_text(
        '[local]\nstore = "redis"\nhost = "127.0.0.1"\nport = 9\n'
        f'[remote]\nstore = "tempfile"\nname = "r"\nroot = "{tmp_path / "remote"}"\n'
    )
    CachedStoreFactory.from_config(config).remote_store.put("k", b"from the remote")
    out = subprocess.run([*CSF, "-c", str(config), "cat", "k"], capture_output=True)
    assert (out.returncode, out.stdout) == (0, b"from the remote")
    [warning] = out.stderr.decode().splitlines()
    assert warning.startswith("csf: warning: the local store RedisStore(host='127.0.0.1'")
    assert warning.endswith("reads and writes go to the remote until it answers again")


def test_check_of_a_down_redis_fails_without_saying_config_ok(tmp_path: Path) -> None:
    config = tmp_path / "f.toml"
    config.write_text(
        '[local]\nstore = "redis"\nhost = "127.0.0.1"\nport = 9\n[remote]\nstore = "memory"\n'
    )
    out = subprocess.run([*CSF, "-c", str(config), "check"], capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (1, "")
    [line] = out.stderr.splitlines()
    assert line.startswith("csf: error: the local store RedisStore(host='127.0.0.1', port=9")
    assert "does not answer: Redis at 127.0.0.1:9 db 0: ConnectionError" in line


# -- every subcommand against moto's S3 server over HTTP -----------------------------------


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket("cli")


@pytest.fixture
def config(tmp_path: Path, s3_server: S3Server, bucket: str) -> Path:
    """A tempfile store in front of the bucket, fresh for 60 s."""
    path = tmp_path / "csf.toml"
    path.write_text(
        f'[local]\nstore = "tempfile"\nname = "local"\nroot = "{tmp_path / "local"}"\n'
        f'[remote]\nstore = "s3"\nbucketname = "{bucket}"\ns3_region = "eu-central-1"\n'
        f'endpoint_url = "{s3_server.endpoint_url}"\n'
        'aws_access_key_id = "testing"\naws_secret_access_key = "testing"\n'
        '[policy]\nname = "ttl"\ninterval = 60.0\n'
    )
    return path


def csf(config: Path, *args: str) -> int:
    return main([*args, "-c", str(config)])  # options after the subcommand


def local_copies(config: Path) -> set[str]:
    return set(CachedStoreFactory.from_config(config).local_store.keys())


def age_local_copies(config: Path, seconds: float) -> None:
    """Make every local copy look `seconds` older (a tempfile entry's age is its mtime)."""
    for entry in (config.parent / "local" / "objects").iterdir():
        info = entry.stat()
        os.utime(entry, (info.st_atime - seconds, info.st_mtime - seconds))


@pytest.mark.s3
def test_ls_lists_size_stored_time_freshness_and_place(
    config: Path,
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "one").write_bytes(b"1" * 10)
    assert csf(config, "put", "a/cached", str(tmp_path / "one")) == 0
    assert csf(config, "put", "a/old", str(tmp_path / "one")) == 0
    age_local_copies(config, 3600)  # both copies are an hour old: stale under a 60 s TTL
    assert csf(config, "put", "a/cached", str(tmp_path / "one")) == 0  # fresh again
    s3_server.client().put_object(Bucket=bucket, Key="a/remote-only", Body=b"22")
    s3_server.client().put_object(Bucket=bucket, Key="b/elsewhere", Body=b"3")
    capsys.readouterr()

    assert csf(config, "ls", "a/", "--json") == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"a/cached", "a/old", "a/remote-only"}
    assert {k: (r["size"], r["state"], r["local"], r["remote"]) for k, r in rows.items()} == {
        "a/cached": (10, "fresh", True, True),
        "a/old": (10, "stale", True, True),
        "a/remote-only": (2, None, False, True),
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows["a/old"]["stored"])

    assert csf(config, "ls") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["key", "size", "stored", "state", "where"]
    table = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert table["a/remote-only"][2:] == ["-", "remote"]
    assert table["a/old"][2:] == ["stale", "local+remote"]
    assert table["b/elsewhere"][0] == "1"


@pytest.mark.s3
def test_ls_leaves_out_the_blocks_of_objects_read_in_ranges(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = CachedStoreFactory.from_config(config).local_store
    local.put(".csf-partial/0123abcd", b'{"etag": "e", "size": 9, "block": 4}')
    local.put(".csf-partial/4567cdef/0", b"1234")
    capsys.readouterr()
    assert csf(config, "ls", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.s3
def test_rm_deletes_remote_and_local_and_names_a_missing_key(
    config: Path, s3_server: S3Server, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = s3_server.client()
    for key in ("x/1", "x/2"):
        client.put_object(Bucket=bucket, Key=key, Body=b"data")
    assert csf(config, "warm", "x/1", "x/2") == 0
    assert local_copies(config) == {"x/1", "x/2"}

    assert csf(config, "rm", "x/1", "x/missing") == 1
    assert capsys.readouterr().err.endswith("csf: rm: no entry for key 'x/missing'\n")
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in listed] == ["x/2"]
    assert local_copies(config) == {"x/2"}


@pytest.mark.s3
def test_invalidate_drops_the_local_copy_and_the_next_read_fetches_once(
    config: Path,
    s3_server: S3Server,
    bucket: str,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="doc", Body=b"v1")
    assert csf(config, "cat", "doc") == 0
    s3_server.client().put_object(Bucket=bucket, Key="doc", Body=b"v2")  # behind the cache
    assert csf(config, "cat", "doc") == 0
    assert capsysbinary.readouterr().out == b"v1v1"  # fresh local copy, no request

    assert csf(config, "invalidate", "doc", "never-cached") == 0
    assert local_copies(config) == set()
    gets = s3_server.count("GET", f"/{bucket}/doc")
    assert csf(config, "cat", "doc") == 0
    assert capsysbinary.readouterr().out == b"v2"
    assert s3_server.count("GET", f"/{bucket}/doc") == gets + 1
    assert [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]] == [
        "doc"
    ]


@pytest.mark.s3
def test_purge_drops_stale_copies_and_all_drops_every_copy_never_remote_data(
    config: Path, s3_server: S3Server, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("p/old", "p/new"):
        s3_server.client().put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert csf(config, "warm", "p/old") == 0
    age_local_copies(config, 3600)
    assert csf(config, "warm", "p/new") == 0
    capsys.readouterr()

    assert csf(config, "purge") == 0
    assert capsys.readouterr().err == "removed 1 local copy\n"
    assert local_copies(config) == {"p/new"}
    assert csf(config, "purge", "--all", "--quiet") == 0
    assert capsys.readouterr().err == ""
    assert local_copies(config) == set()
    listed = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"] for o in listed) == ["p/new", "p/old"]


@pytest.mark.s3
def test_warm_fetches_each_key_once_from_arguments_and_a_file(
    config: Path,
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = [f"w/{n}" for n in range(6)]
    for key in keys:
        s3_server.client().put_object(Bucket=bucket, Key=key, Body=key.encode() * 100)
    listing = tmp_path / "keys.txt"
    listing.write_text("# to warm\nw/3\n\nw/4\nw/5\nw/5\n")
    # w/0 four times over four threads: single-flight makes it one GET.
    args = ["warm", "w/0", "w/0", "w/0", "w/0", "w/1", "w/2", "--from", str(listing)]
    assert csf(config, *args, "--jobs", "4", "--progress") == 0
    assert local_copies(config) == set(keys)
    assert [s3_server.count("GET", f"/{bucket}/{key}") for key in keys] == [1] * 6
    err = capsys.readouterr().err
    assert "warming:   0%|          | 0/10 [" in err  # then erased when done
    assert "warmed 10 of 10 keys: 6 fetched (1800 bytes), " in err

    assert csf(config, "warm", "w/0", "w/missing", "-j", "2") == 1
    err = capsys.readouterr().err
    assert "csf: warm: 'w/missing': no entry for key 'w/missing'" in err
    assert s3_server.count("GET", f"/{bucket}/w/0") == 1  # fresh: no request


@pytest.mark.s3
def test_put_and_cat_draw_a_bar_for_a_large_object_with_progress(
    config: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    (tmp_path / "big").write_bytes(payload)
    assert csf(config, "put", "big", str(tmp_path / "big"), "--progress") == 0
    assert b"3.00M/3.00M" in capsysbinary.readouterr().err
    assert csf(config, "invalidate", "big") == 0
    assert csf(config, "--progress", "cat", "big") == 0
    out, err = capsysbinary.readouterr()
    assert out == payload
    assert b"100%" in err
    assert csf(config, "invalidate", "big") == 0
    assert csf(config, "--progress", "cat", "big", "--quiet") == 0
    assert capsysbinary.readouterr().err == b""
