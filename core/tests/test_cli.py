"""The csf command: listings, checks, cat/put through the cache, exit codes."""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from importlib.metadata import version
from pathlib import Path

import pytest

from cached_stores_factory import CachedStoreFactory
from cached_stores_factory.cli import _parser, main
from cached_stores_factory.plugins import registry
from cached_stores_factory.testing.servers import S3Server

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


def test_ls_of_a_prefix_with_no_entries_prints_only_the_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(config_file(tmp_path)), "ls", "nothing/"]) == 0
    assert capsys.readouterr().out.split() == ["key", "size", "stored", "state", "where"]


def test_ls_and_get_leave_out_remote_keys_under_the_reserved_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path, f'store = "tempfile"\nname = "local"\nroot = "{tmp_path}/local"')
    factory = CachedStoreFactory.from_config(path)
    factory.remote_store.put(".csf-partial/from-another-client", b"x")
    factory.remote_store.put("k", b"x")
    assert main(["-c", str(path), "ls", "--json"]) == 0
    assert [row["key"] for row in json.loads(capsys.readouterr().out)] == ["k"]
    assert main(["-c", str(path), "cat", ".csf-partial/from-another-client"]) == 1
    assert "reserves for the blocks of ranged reads" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("jobs", "problem"),
    [("abc", "must be a whole number, not 'abc'"), ("0", "must be at least 1, not 0")],
)
def test_warm_jobs_that_are_not_a_positive_number_are_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], jobs: str, problem: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["-c", str(config_file(tmp_path)), "warm", "k", "--jobs", jobs])
    assert exit_info.value.code == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line == f"csf warm: error: argument -j/--jobs: {problem}"


def test_cat_of_a_missing_key_exits_1_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(config_file(tmp_path)), "cat", "no/such.key"]) == 1
    err = capsys.readouterr().err
    assert "no/such.key" in err
    assert "Traceback" not in err


def test_cat_of_a_prefix_says_it_is_a_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(config_file(tmp_path)), "cat", "data/"]) == 1
    assert capsys.readouterr().err == (
        "csf: error: key 'data/' ends with '/': that is a prefix, not a key; "
        "name one entry under it\n"
    )


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


def test_options_are_accepted_after_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(config_file(tmp_path))
    assert main(["check", "-c", path]) == 0
    assert main(["check", "--config", path, "--quiet"]) == 0
    assert main(["--debug", "check", "-c", path]) == 0
    assert "local store answers: MemoryStore" in capsys.readouterr().out


def test_version_names_core_and_each_installed_plugin(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"csf {version('cached-stores-factory-core')} (cached-stores-factory-core, plugin API 1)"
    )
    plugins = {r.name: r for r in registry.plugins() if r.name != "builtins"}
    assert len(lines) == 1 + len(plugins) + 1
    for line, record in zip(
        lines[1:-1], sorted(plugins.values(), key=lambda r: r.name), strict=True
    ):
        assert line.startswith(f"plugin {record.name} {record.version} ({record.distribution})")
    # The fsspec filesystem registers with fsspec, not as a csf plugin: listed all the same.
    fsspec_version = version("cached-stores-factory-fsspec")
    assert lines[-1] == f"fsspec csf:// {fsspec_version} (cached-stores-factory-fsspec)"


def subcommands() -> list[str]:
    actions = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(actions[0].choices)


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_has_a_description_and_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    usage, description, *_ = text.split("\n\n")
    assert usage.startswith(f"usage: csf {command} ")
    assert description.endswith(".") and len(description.split()) >= 4
    example = text.split("example:\n")[1].strip()
    assert example.startswith(f"csf {command}")


def test_a_closed_pipe_ends_quietly_with_exit_0() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before csf writes a byte
    try:
        out = subprocess.run(
            [sys.executable, "-m", "cached_stores_factory.cli", "plugins", "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    assert (out.returncode, out.stderr) == (0, b"")


def test_piping_into_head_ends_quietly_with_exit_0(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    source = tmp_path / "many"
    source.write_bytes(b"line\n" * 200_000)  # far more than a pipe buffers
    csf = [sys.executable, "-m", "cached_stores_factory.cli", "-c", str(path)]
    subprocess.run([*csf, "put", "k", str(source)], check=True)
    for command in (["cat", "k"], ["plugins", "--json"]):
        with subprocess.Popen(
            [*csf, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as producer:
            head = subprocess.run(["head", "-1"], stdin=producer.stdout, capture_output=True)
            assert producer.stdout is not None
            producer.stdout.close()
            assert producer.wait(timeout=60) == 0
            assert producer.stderr is not None
            assert producer.stderr.read() == b""
        assert head.stdout in (b"line\n", b"[\n")


def in_a_terminal(command: list[str], env: dict[str, str]) -> list[str]:
    """Run `command` with stderr on a real pseudo-terminal; the bar's redraws, in order."""
    main_fd, terminal_fd = pty.openpty()
    # A new pseudo-terminal is 0 columns wide; give it a real terminal's size.
    fcntl.ioctl(terminal_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=terminal_fd,
        env={**os.environ, **env},
    ) as process:
        os.close(terminal_fd)
        screen = b""
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # EIO: the terminal's last writer closed it
                break
            if not chunk:
                break
            screen += chunk
        assert process.wait(timeout=300) == 0, screen.decode(errors="replace")
    os.close(main_fd)
    return [part.strip() for part in screen.decode().split("\r") if part.strip()]


def s3_config(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A memory store in front of a bucket of moto's S3 server, over HTTP."""
    server: S3Server = request.getfixturevalue("s3_server")
    path = tmp_path / "s3.toml"
    path.write_text(
        f'[local]\nstore = "memory"\n[remote]\nstore = "s3"\n'
        f'bucketname = "{server.new_bucket("bar")}"\nendpoint_url = "{server.endpoint_url}"\n'
        'aws_access_key_id = "testing"\naws_secret_access_key = "testing"\n'
    )
    return path


@pytest.mark.parametrize(
    ("remote", "mib", "size"),
    [
        ("tempfile", 50, "50.0M"),
        # Past S3's 8 MiB multipart threshold the store reads the first part twice (once to
        # choose a single PUT or a multipart upload); the bar used to count it twice: 108M.
        pytest.param("s3", 100, "100M", marks=pytest.mark.s3),
    ],
)
def test_put_draws_a_progress_bar_in_a_terminal(
    tmp_path: Path, request: pytest.FixtureRequest, remote: str, mib: int, size: str
) -> None:
    """The real `csf put` with stderr on a pseudo-terminal, and no --progress: 0% to 100%."""
    path = config_file(tmp_path) if remote == "tempfile" else s3_config(tmp_path, request)
    source = tmp_path / "big"
    with source.open("wb") as out:
        for _ in range(mib):
            out.write(os.urandom(1024 * 1024))
    csf = str(Path(sys.executable).parent / "csf")
    redraws = in_a_terminal([csf, "put", "big", str(source)], {"CSF_CONFIG": str(path)})
    assert re.match(rf"big: +0%\| +\| 0\.00/{size} \[", redraws[0]), redraws[0]
    assert re.match(rf"big: 100%\|█+\| {size}/{size} \[", redraws[-1]), redraws[-1]
    remote_store = CachedStoreFactory.from_config(path).remote_store
    assert remote_store.stat("big").size == mib * 1024 * 1024
    assert remote_store.get("big") == source.read_bytes()


def test_ls_of_many_keys_counts_them_on_a_bar_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path)
    remote = CachedStoreFactory.from_config(path).remote_store
    for n in range(1000):
        remote.put(f"k/{n:04}", b"x")
    assert main(["ls", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1001
    assert err == ""  # not a terminal, no --progress
    assert main(["ls", "k/", "-c", str(path), "--progress", "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 1000
    assert "listing:   0%|          | 0/1000 [" in err
