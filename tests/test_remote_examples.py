"""The two examples of remotes through fsspec, each in a fresh interpreter: a GCS bucket
(fake-gcs-server) cached in temp files, and an HTTP file tree cached in Redis.

Each example starts its own servers; the fixtures here only make sure they can (skip
outside CI, fail under CI=true).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cached_stores_factory.testing.servers import GcsServer, RedisServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(example: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_the_gcs_example_hits_then_revalidates_without_a_body(gcs_server: GcsServer) -> None:
    out = run("gcs_tempfile_ttl.py")
    for line in (
        "first read (miss)            2024.csv    26 bytes  requests=1  body bytes from GCS=26",
        "second read (hit)            2024.csv    26 bytes  requests=0  body bytes from GCS=0",
        "expired, unchanged           2024.csv    26 bytes  requests=1  body bytes from GCS=0",
        "expired, changed             2024.csv    33 bytes  requests=2  body bytes from GCS=33",
        "counters: {'hits': 1, 'misses': 3, 'revalidated': 1}",
        "Example finished",
    ):
        assert line in out, out


@pytest.mark.redis
def test_the_http_example_caches_in_redis_and_refuses_writes(redis_server: RedisServer) -> None:
    out = run("http_redis.py")
    for line in (
        "files: ['releases/v1/data.json', 'releases/v1/readme.txt']",
        "first read (miss)            releases/v1/data.json     11 bytes  origin answered [206]",
        "second read (hit)            releases/v1/data.json     11 bytes  origin answered [] "
        "with 0 body bytes",
        "expired, unchanged           releases/v1/data.json     11 bytes  origin answered [304] "
        "with 0 body bytes",
        "an http location is read-only",
        "Example finished",
    ):
        assert line in out, out
