"""Peak RSS growth while a fresh process streams one large object through the cache."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cached_stores_factory.testing.servers import S3Server

from ._harness import GiB, MiB, Row, Sizes, Target, unavailable
from ._parts import PartMissing, part
from .s3_rows import BUCKET, create_bucket, s3_store

TARGET = Target("value", "<=", 64, "MiB")
REPO = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 300


def figure(sizes: Sizes) -> str:
    size = sizes.stream_bytes
    label = f"{size // GiB} GiB" if size >= GiB else f"{size // MiB} MiB"
    return f"streaming {label}: peak RSS growth (miss, then hit)"


def _write_object(path: Path, size: int) -> None:
    block = bytes(range(256)) * (MiB // 256)
    with path.open("wb") as out:
        for _ in range(size // MiB):
            out.write(block)


def run(sizes: Sizes, s3: S3Server | None) -> list[Row]:
    name = figure(sizes)
    try:
        part("TempfileStore")
    except PartMissing as exc:
        return [unavailable(name, TARGET, str(exc))]
    key = "stream/large.bin"
    with tempfile.TemporaryDirectory(prefix="csf-bench-stream-") as tmp:
        workdir = Path(tmp)
        source = workdir / "source.bin"
        _write_object(source, sizes.stream_bytes)
        spec = {
            "key": key,
            "local_root": str(workdir / "local"),
            "raw_path": str(workdir / "raw.bin"),
        }
        try:
            if s3 is None:
                raise PartMissing("no S3 endpoint")
            s3_store(s3).close()
        except PartMissing as exc:
            origin = f"tempfile remote ({exc})"
            remote = part("TempfileStore")("origin", root=workdir / "remote")
            with source.open("rb") as stream:
                remote.put_stream(key, stream)
            remote.close()
            spec["remote_root"] = str(workdir / "remote")
        else:
            origin = "S3 remote (moto, this process) into a tempfile local store"
            create_bucket(s3).upload_file(str(source), BUCKET, key)
            spec.update(endpoint_url=s3.endpoint_url, bucket=BUCKET)
        source.unlink()
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks._rss_child", json.dumps(spec)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the streaming child failed: {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["bytes"] != [sizes.stream_bytes] * 3 or result["remote_reads"] != 1:
        raise AssertionError(f"the streaming child read the wrong amount: {result}")
    ours = max(result["miss_mib"], result["hit_mib"])
    return [
        Row(
            name,
            TARGET,
            ours,
            result["baseline_mib"],
            "MiB",
            f"{origin}; miss {result['miss_mib']:.1f} MiB, hit {result['hit_mib']:.1f} MiB; "
            "baseline: the same object streamed by the raw client into a file",
            extra=result,
        )
    ]
