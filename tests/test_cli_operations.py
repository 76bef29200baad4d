"""The csf command against real servers: checks before connecting, and every subcommand on S3."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
    ],
)
def test_check_reports_a_wrong_type_in_one_line_before_connecting(
    tmp_path: Path, remote: str, message: str
) -> None:
    config = tmp_path / "f.toml"
    config.write_text(f'[local]\nstore = "memory"\n[remote]\n{remote}\n')
    out = subprocess.run([*CSF, "-c", str(config), "check"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr == f"csf: error: {config}: {message}\n"
    assert "12345678" not in out.stderr
