"""Bounded by default: TTLCache takes max_entries and max_bytes, and `csf stats` shows them.

The bound itself is checked against a model in test_policies_stateful ("ttl+bounds").
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from cached_stores_factory import CachedStoreFactory
from cached_stores_factory.cli import main
from cached_stores_factory.errors import ConfigError
from cached_stores_factory_policies import TTLCache
from cached_stores_factory_tempfile import TempfileStore


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"max_entries": 0}, "argument 'max_entries': max_entries must be >= 1, got 0"),
        ({"max_bytes": "big"}, "argument 'max_bytes': must be an int, not str 'big'"),
        ({"max_entries": True}, "argument 'max_entries': must be an int, not bool True"),
        (
            {"ledger": "redis://localhost:6379/0"},
            ": ttl: a ledger keeps bounds, and this policy has none: give max_entries or "
            "max_bytes, or drop ledger",
        ),
    ],
)
def test_ttl_bounds_in_a_config_are_checked_naming_the_argument(
    arguments: dict[str, object], problem: str
) -> None:
    config = {
        "local": {"store": "memory"},
        "remote": {"store": "memory"},
        "policy": {"name": "ttl", "interval": 60, **arguments},
    }
    with pytest.raises(ConfigError) as raised:
        CachedStoreFactory.from_config(config)
    assert str(raised.value) == f"config: [policy] policy 'ttl'{problem}".replace(
        "'ttl'argument", "'ttl' argument"
    )


def test_a_bounded_ttl_evicts_the_oldest_from_a_tempfile_store(tmp_path: Path) -> None:
    local = TempfileStore("local", root=tmp_path / "local")
    remote = TempfileStore("remote", root=tmp_path / "remote")
    cached = CachedStoreFactory(local, remote, TTLCache(3600, max_entries=3, max_bytes=20)).build()
    for index in range(5):
        cached.put(f"k{index}", b"1234")
    assert sorted(local.keys()) == ["k2", "k3", "k4"]
    cached.put("big", b"x" * 13)  # 3 * 4 + 13 > 20, and 2 * 4 + 13 too: the two oldest go
    assert sorted(local.keys()) == ["big", "k4"]
    assert sorted(remote.keys()) == ["big", "k0", "k1", "k2", "k3", "k4"]
    cached.close()
    # The ledger lasts: a restart keeps counting from what the store holds.
    local = TempfileStore("local", root=tmp_path / "local")
    again = CachedStoreFactory(
        local,
        TempfileStore("remote", root=tmp_path / "remote"),
        TTLCache(3600, max_entries=3, max_bytes=20),
    ).build()
    assert again.get("k0") == b"1234"
    again.put("k5", b"1234")
    assert sorted(local.keys()) == ["k0", "k5"]  # 4 + 13 + 4 + 4 > 20: k4 went, then big
    again.close()


def test_an_unbounded_ttl_keeps_no_ledger(tmp_path: Path) -> None:
    local = TempfileStore("local", root=tmp_path / "local")
    remote = TempfileStore("r", root=tmp_path / "r")
    cached = CachedStoreFactory(local, remote, TTLCache(60)).build()
    for index in range(5):
        cached.put(f"k{index}", b"1234")
    assert len(list(local.keys())) == 5
    assert list(local.state_dir().iterdir()) == []
    cached.close()


def stats_lines(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    assert main(["-c", str(config), "stats"]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {line[:18].strip(): line[19:] for line in lines if not line.startswith(" ")}


def test_csf_stats_shows_each_bound_next_to_its_usage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cache.toml"
    stores = (
        f'[local]\nstore = "tempfile"\nname = "l"\nroot = "{tmp_path / "local"}"\n'
        f'[remote]\nstore = "tempfile"\nname = "r"\nroot = "{tmp_path / "remote"}"\n'
    )
    config.write_text(stores + '[policy]\nname = "ttl"\ninterval = 60\nmax_entries = 2\n')
    for key in ("a", "b", "c"):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"12345")))
        assert main(["-c", str(config), "put", key]) == 0
    capsys.readouterr()
    shown = stats_lines(config, capsys)
    assert shown["local_entries"] == "2 of at most 2"
    assert shown["local_bytes"] == "10 (no bound)"
    assert "max_entries" not in shown

    config.write_text(stores + '[policy]\nname = "fifo"\ndepth = 5\nmax_bytes = 64\n')
    shown = stats_lines(config, capsys)
    assert (shown["local_entries"], shown["local_bytes"]) == ("2 of at most 5", "10 of at most 64")
    assert main(["-c", str(config), "stats", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["local_entries"], report["max_entries"]) == (2, 5)
    assert (report["local_bytes"], report["max_bytes"]) == (10, 64)
