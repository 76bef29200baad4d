"""S3 client settings from a config; `csf check --timeout` against a server that never answers."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cached_stores_factory import CachedStoreFactory

CSF = [sys.executable, "-m", "cached_stores_factory.cli"]


def s3_config(path: Path, endpoint: str, settings: str = "") -> Path:
    path.write_text(
        '[local]\nstore = "memory"\n'
        '[remote]\nstore = "s3"\nbucketname = "bucket"\ns3_region = "eu-central-1"\n'
        f'endpoint_url = "{endpoint}"\n'
        'aws_access_key_id = "testing"\naws_secret_access_key = "testing"\n' + settings
    )
    return path


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback TCP port that accepts connections (the kernel does) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_client_settings_are_config_keys(tmp_path: Path):
    settings = 'connect_timeout = 1.5\nread_timeout = 2\nmax_attempts = 3\nretry_mode = "legacy"\n'
    config = s3_config(tmp_path / "f.toml", "http://127.0.0.1:9", settings)
    client = CachedStoreFactory.from_config(config).remote_store._client
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (1.5, 2)
    assert client.meta.config.retries == {"mode": "legacy", "total_max_attempts": 3}


def test_check_rejects_a_bad_retry_mode_before_connecting(tmp_path: Path):
    config = s3_config(tmp_path / "f.toml", "http://127.0.0.1:9", 'retry_mode = "eager"\n')
    out = subprocess.run([*CSF, "-c", str(config), "check"], capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == (
        f"csf: error: {config}: [remote] store 's3' argument 'retry_mode': must be one of "
        "'standard', 'adaptive', 'legacy', not 'eager'\n"
    )


def test_check_fails_at_its_timeout_against_a_server_that_never_answers(
    tmp_path: Path, silent_endpoint: str
):
    config = s3_config(tmp_path / "f.toml", silent_endpoint)
    # Without the bound, botocore would wait 60 s for each of 5 attempts.  The bound leaves
    # a loaded machine ample time to build the store; the subprocess timeout is a guard
    # against hanging for good, not a speed assertion.
    out = subprocess.run(
        [*CSF, "-c", str(config), "check", "--timeout", "10"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert out.stdout == ""  # nothing is reported ok before both stores answered
    assert out.stderr.startswith(
        "csf: error: check: no answer within 10 s while listing the remote store S3Store("
    )
    assert silent_endpoint in out.stderr
