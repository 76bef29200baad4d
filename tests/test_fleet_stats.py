"""`csf stats` sums the counters of every process that shares a policy's ledger.

Real processes read through one cache (a tempfile directory with its SQLite ledger, or a
Redis store with its ledger in the same Redis); each prints its own counters when it is
done.  `csf stats` in another process must report their sums, and say where they come from.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from cached_stores_factory.testing.servers import RedisServer
from cached_stores_factory_tempfile import TempfileStore

READER = """
import json, sys
from cached_stores_factory import CachedStoreFactory
cached = CachedStoreFactory.from_config(sys.argv[1]).build()
for key in sys.argv[2:]:
    with cached.open_read(key) as entry:
        entry.read()
print(json.dumps(cached.stats()))
cached.close()
"""

COUNTERS = ("hits", "misses", "remote_reads", "bytes_from_remote", "bytes_from_local")


def csf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "csf"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def run_readers(config: Path, reads: list[list[str]]) -> list[dict[str, int]]:
    """One process per list of keys, all at once; each one's own counters."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(config), *keys],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for keys in reads
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def local_section(tmp_path: Path, redis_server: RedisServer | None) -> str:
    if redis_server is None:
        return f'store = "tempfile"\nname = "local"\nroot = "{tmp_path}/local"'
    prefix = f"fleet-{uuid.uuid4().hex[:8]}:"
    host, port = redis_server.host, redis_server.port
    return f'store = "redis"\nhost = "{host}"\nport = {port}\nprefix = "{prefix}"'


@pytest.fixture(params=["tempfile", "redis"])
def redis_or_none(request: pytest.FixtureRequest) -> RedisServer | None:
    if request.param == "tempfile":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server


def test_csf_stats_sums_over_processes(tmp_path: Path, redis_or_none: RedisServer | None):
    remote = TempfileStore("remote", root=tmp_path / "remote")
    for n in range(6):
        remote.put(f"k{n}", b"x" * (100 + n))
    config = tmp_path / "cache.toml"
    config.write_text(
        f"[local]\n{local_section(tmp_path, redis_or_none)}\n\n"
        f'[remote]\nstore = "tempfile"\nname = "remote"\nroot = "{tmp_path}/remote"\n\n'
        '[policy]\nname = "lru"\ndepth = 100\n'
    )
    reads = [[f"k{n % 6}" for n in range(start, start + 9)] for start in range(4)]
    own = run_readers(config, reads)
    assert sum(stats["remote_reads"] for stats in own) >= 6  # every key fetched once at least

    done = csf("-c", str(config), "stats", "--json")
    report: dict[str, Any] = json.loads(done.stdout)
    fleet = report["fleet"]
    for counter in COUNTERS:
        assert fleet.get(counter, 0) == sum(stats[counter] for stats in own), counter
    assert report["source"] == "this csf process only"
    where = "SQLite ledger" if redis_or_none is None else f"Redis at {redis_or_none.host}"
    assert fleet["source"].startswith(f"every process sharing the {where}")

    # The text form says the same, and where the sums come from.
    text = csf("-c", str(config), "stats", "k0").stdout
    assert f"summed over every process sharing the {where}" in text
    hits = sum(stats["hits"] for stats in own) + 1  # this csf's read of k0 is a hit
    assert f"  hits             {hits}" in text


def test_csf_stats_says_when_there_is_no_fleet(tmp_path: Path):
    config = tmp_path / "cache.toml"
    config.write_text(
        '[local]\nstore = "memory"\n\n'
        f'[remote]\nstore = "tempfile"\nname = "r"\nroot = "{tmp_path}/r"\n\n'
        '[policy]\nname = "ttl"\ninterval = 60\n'
    )
    report = json.loads(csf("-c", str(config), "stats", "--json").stdout)
    assert report["fleet"] is None
    assert "none: the policy shares no counters" in csf("-c", str(config), "stats").stdout
