"""The csf command: listings, checks, cat/put through the cache, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cached_stores_factory.cli import main

ROW_KEYS = {"kind", "name", "distribution", "version", "error"}


def config_file(tmp_path: Path, local: str = 'store = "memory"') -> Path:
    """Local store as given; remote a tempfile store in tmp_path, so it outlives one command."""
    path = tmp_path / "csf.toml"
    path.write_text(
        f"[local]\n{local}\n"
        f'[remote]\nstore = "tempfile"\nname = "remote"\nroot = "{tmp_path}/remote"\n'
    )
    return path


def test_plugins_json_lists_every_component_with_its_distribution(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(set(row) == ROW_KEYS for row in rows)
    named = {(row["kind"], row["name"]): row for row in rows}
    assert named["store", "memory"]["distribution"] == "cached-stores-factory-core"
    assert named["store", "memory"]["error"] is None
    assert named["serializer", "json"]["version"] == "0.1.0"


def test_plugins_table_has_a_header_and_a_row_per_component(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["kind", "name", "distribution", "version", "error"]
    assert any(line.split()[:2] == ["store", "memory"] for line in lines[1:])


def test_a_config_error_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[local]\nstore = "memroy"\n[remote]\nstore = "memory"\n')
    assert main(["-c", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("csf: error: ")
    assert "did you mean 'memory'?" in err
    assert "Traceback" not in err


def test_no_config_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CSF_CONFIG", raising=False)
    assert main(["check"]) == 2
    assert "pass -c/--config PATH or set CSF_CONFIG" in capsys.readouterr().err


def test_put_then_cat_round_trips_through_the_remote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    path = config_file(tmp_path)
    monkeypatch.setenv("CSF_CONFIG", str(path))
    source = tmp_path / "payload.bin"
    source.write_bytes(bytes(range(256)) * 10)
    assert main(["put", "dir/payload.bin", str(source)]) == 0
    assert main(["cat", "dir/payload.bin"]) == 0
    assert capsysbinary.readouterr().out == source.read_bytes()


def test_put_reads_stdin(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    csf = [sys.executable, "-m", "cached_stores_factory.cli", "-c", str(path)]
    subprocess.run([*csf, "put", "k"], input=b"from stdin", check=True)
    out = subprocess.run([*csf, "cat", "k"], capture_output=True, check=True)
    assert out.stdout == b"from stdin"


def test_cat_of_a_missing_key_exits_1_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(config_file(tmp_path)), "cat", "no/such.key"]) == 1
    err = capsys.readouterr().err
    assert "no/such.key" in err
    assert "Traceback" not in err


def test_check_reaches_both_stores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(config_file(tmp_path)), "check"]) == 0
    out = capsys.readouterr().out
    assert "local store answers: MemoryStore" in out
    assert "remote store answers: TempfileStore" in out


def test_stats_counts_reads_of_the_given_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path, f'store = "tempfile"\nname = "local"\nroot = "{tmp_path}/local"')
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"12345")))
    assert main(["-c", str(path), "put", "a"]) == 0
    capsys.readouterr()
    assert main(["-c", str(path), "stats", "--json", "a", "a"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["hits"] == 2  # the put left a local copy
    assert report["remote_reads"] == 0
    assert report["local_entries"] == 1
    assert report["local_bytes"] == 5


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[local\n")
    out = subprocess.run(
        [sys.executable, "-m", "cached_stores_factory.cli", "--debug", "-c", str(path), "check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "Traceback" in out.stderr
    assert "invalid TOML" in out.stderr
