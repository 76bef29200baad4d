"""`csf stats` sums the counters of every process that shares a policy's ledger.

Real processes read through one cache (a tempfile directory with its SQLite ledger, or a
Redis store with its ledger in the same Redis); each prints its own counters when it is
done.  `csf stats` in another process must report their sums, and say where they come from.
"""

from __future__ import annotations

import json
import re
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


def lru_config(tmp_path: Path) -> Path:
    """A tempfile store (its SQLite ledger shared by the processes on this host) over another."""
    config = tmp_path / "cache.toml"
    config.write_text(
        f'[local]\nstore = "tempfile"\nname = "local"\nroot = "{tmp_path}/local"\n\n'
        f'[remote]\nstore = "tempfile"\nname = "remote"\nroot = "{tmp_path}/remote"\n\n'
        '[policy]\nname = "lru"\ndepth = 100\n'
    )
    return config


def test_csf_put_and_cat_are_counted_for_the_fleet(tmp_path: Path) -> None:
    """They read and write through a metered remote: it used to skip the shared counters."""
    config = lru_config(tmp_path)
    (tmp_path / "payload").write_bytes(b"p" * 1000)
    csf("-c", str(config), "put", "k", str(tmp_path / "payload"))
    for _ in range(3):
        csf("-c", str(config), "cat", "k")  # the put left a fresh local copy: hits
    csf("-c", str(config), "invalidate", "k")
    csf("-c", str(config), "cat", "k")  # a miss, fetched

    fleet = json.loads(csf("-c", str(config), "stats", "--json").stdout)["fleet"]
    assert (fleet["remote_writes"], fleet["hits"], fleet["misses"]) == (1, 3, 1)
    assert (fleet["remote_reads"], fleet["bytes_from_remote"]) == (1, 1000)
    assert fleet["hit_ratio"] == 0.75
    text = csf("-c", str(config), "stats").stdout
    assert "  hit_ratio        75.0%" in text
    assert "hit_ratio          - (no reads yet)" in text  # this csf process read nothing


def test_csf_stats_prometheus_prints_the_fleet_counters(tmp_path: Path) -> None:
    config = lru_config(tmp_path)
    TempfileStore("remote", root=tmp_path / "remote").put("k", b"12345")
    for _ in range(2):
        csf("-c", str(config), "cat", "k")  # a miss, then a hit

    text = csf("-c", str(config), "stats", "--prometheus").stdout
    fleet = f'{{fleet="SQLite ledger {tmp_path}/local/state/lru.sqlite3"}}'
    assert "# TYPE csf_hits_total counter\n" in text
    assert f"\ncsf_hits_total{fleet} 1\n" in text
    assert f"\ncsf_misses_total{fleet} 1\n" in text
    assert f"\ncsf_remote_read_bytes_total{fleet} 5\n" in text
    assert f"\ncsf_evictions_total{fleet} 0\n" in text  # never grew, and still a series
    assert f"# TYPE csf_hit_ratio gauge\ncsf_hit_ratio{fleet} 0.5\n" in text
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert all(re.fullmatch(r"csf_[a-z_]+\{fleet=\"[^\"]+\"\} [0-9.]+", s) for s in samples)


def test_csf_stats_prometheus_without_a_fleet_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "cache.toml"
    config.write_text(
        '[local]\nstore = "memory"\n\n'
        f'[remote]\nstore = "tempfile"\nname = "r"\nroot = "{tmp_path}/r"\n'
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "csf"), "-c", str(config), "stats", "--prometheus"],
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "csf: error: stats --prometheus: the policy shares no counters between processes\n"
    )
