"""Crash safety: a writer SIGKILLed at random moments never leaves a torn, short or stale value.

A writer process (tests/crash_writer.py) writes 4-8 MiB versions of one key through a cached
store (TempfileStore over S3Store on moto's HTTP endpoint) until it is killed at a random
moment: in the middle of an upload, of a multipart upload, of the local copy, or between
them.  After each kill:

- the remote holds a complete version (never torn or short);
- the local store holds a complete version or nothing;
- a fresh reader through a cached store gets a complete version, the one the remote holds:
  never an older one.

`make test` runs 20 kills; `make stress` runs 200 (CSF_CRASH_RUNS).  The seed of the random
moments is printed on failure (CSF_CRASH_SEED replays it).
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from cached_stores_factory.errors import CorruptEntryError
from cached_stores_factory.testing.servers import S3Server
from cached_stores_factory_tempfile import TempfileStore

pytestmark = [pytest.mark.s3, pytest.mark.slow]

RUNS = int(os.environ.get("CSF_CRASH_RUNS", "20"))
SEED = int(os.environ.get("CSF_CRASH_SEED", str(random.randrange(2**32))))
WRITER = Path(__file__).with_name("crash_writer.py")
BUCKET = "crash-safety"
KEY = "data/value.bin"
READY_TIMEOUT = 60.0


def load_writer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_writer", WRITER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


writer = load_writer()


def start_writer(s3: S3Server, root: Path, first: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(WRITER), s3.endpoint_url, BUCKET, str(root), KEY, str(first)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "ready", or "" if the writer died
    if line.strip() != "ready":
        process.kill()
        _, errors = process.communicate(timeout=READY_TIMEOUT)
        pytest.fail(f"the writer did not start: {errors[-2000:]}")
    return process


def remote_version(s3: S3Server) -> int | None:
    client = s3.client()
    try:
        body = client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    version: int = writer.version_of(body)  # raises if torn or short
    return version


def local_version(root: Path) -> int | None:
    with TempfileStore("crash", root=root) as local:  # opening it sweeps killed writers' temps
        try:
            data = local.get(KEY)
        except KeyError:
            return None
        except CorruptEntryError as exc:
            pytest.fail(f"a killed writer left a corrupt local entry: {exc}")
    version: int = writer.version_of(data)
    return version


def read_through_cache(s3: S3Server, root: Path) -> int:
    cached = writer.cached_store(s3.endpoint_url, BUCKET, str(root))
    try:
        with cached.open(KEY, "rb") as handle:
            data = handle.read()
    finally:
        cached.close()
    version: int = writer.version_of(data)
    return version


def test_a_writer_killed_at_random_moments_leaves_complete_values_never_stale(
    s3_server: S3Server, tmp_path: Path
):
    client = s3_server.client()
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
        )
    rng = random.Random(SEED)
    root = tmp_path / "cache"
    first = 1
    stale: list[str] = []
    for run in range(RUNS):
        context = f"run {run} of {RUNS} (CSF_CRASH_SEED={SEED})"
        process = start_writer(s3_server, root, first)
        time.sleep(rng.uniform(0.0, 1.2))
        process.kill()
        output, _ = process.communicate(timeout=READY_TIMEOUT)
        committed = [int(line) for line in output.split()]
        # The version in flight at the kill may have reached the remote: never reuse it.
        first = (committed[-1] if committed else first - 1) + 2

        on_remote = remote_version(s3_server)
        in_cache = local_version(root)
        assert on_remote is not None or not committed, f"{context}: a commit left no object"
        if committed:
            assert on_remote is not None and on_remote >= committed[-1], context
        if on_remote is None:
            continue
        read = read_through_cache(s3_server, root)
        # A request the writer sent whole before it died may still complete at the endpoint
        # after the kill, so the remote can move on while we look: the read must be at least
        # what the remote held before it, and at most what it holds after.
        after = remote_version(s3_server)
        assert after is not None, f"{context}: the object vanished"
        if not on_remote <= read <= after:
            stale.append(
                f"{context}: remote {on_remote} then {after}, local {in_cache}, read {read}"
            )
    message = "a reader got an older version than the remote held:\n" + "\n".join(stale)
    assert not stale, message
