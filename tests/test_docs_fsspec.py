"""docs/fsspec.md runs as written: its cache.toml and every Python block, against moto's S3.

The blocks run in order in one fresh interpreter, in a directory holding the page's TOML block
as cache.toml, with an AWS profile `my_profile` whose endpoint is the test server.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cached_stores_factory.testing.servers import S3Server

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "fsspec.md"
REGION = "eu-central-1"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", PAGE.read_text(), re.M | re.S)


def test_the_readme_links_the_page() -> None:
    assert "(docs/fsspec.md)" in (REPO / "README.md").read_text()


@pytest.mark.s3
def test_every_example_runs_against_s3(s3_server: S3Server, tmp_path: Path) -> None:
    (toml,) = blocks("toml")
    (tmp_path / "cache.toml").write_text(toml)
    aws_config = tmp_path / "aws-config"
    aws_config.write_text(
        "[profile my_profile]\n"
        f"endpoint_url = {s3_server.endpoint_url}\n"
        f"region = {REGION}\n"
        "aws_access_key_id = testing\n"
        "aws_secret_access_key = testing\n"
    )
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(aws_config),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials"),
        TMPDIR=str(tmp_path / "tmp"),
    )
    client = s3_server.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(
            Bucket="my_bucket", CreateBucketConfiguration={"LocationConstraint": REGION}
        )
    for item in client.list_objects_v2(Bucket="my_bucket").get("Contents", []):
        client.delete_object(Bucket="my_bucket", Key=item["Key"])

    program = "\n".join(blocks("python"))
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "notes-copy" / "todo.txt").read_text() == "water the plants\n"
    keys = {item["Key"] for item in client.list_objects_v2(Bucket="my_bucket")["Contents"]}
    assert keys == {"weather/today.csv", "weather/today.parquet"}
