"""Run in a fresh process by streaming.py: stream one large object, report peak RSS growth.

Usage: python -m benchmarks._rss_child '<json spec>'.  The spec names the remote (an S3
endpoint or a tempfile root), the key and the local root.  Prints one JSON object.
"""

from __future__ import annotations

import contextlib
import gc
import json
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ._parts import part
from ._services import S3_CREDENTIALS

CHUNK = 1024 * 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so the next phase is measured on its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_growth_mib(phase: Callable[[], int]) -> tuple[float, int]:
    """(peak RSS growth in MiB while `phase` ran, bytes it returned)."""
    gc.collect()
    if _reset_peak():
        before = _status_kib("VmRSS")
        moved = phase()
        return (_status_kib("VmHWM") - before) / 1024, moved
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    moved = phase()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, moved


def drain(handle: IO[bytes]) -> int:
    total = 0
    while chunk := handle.read(CHUNK):
        total += len(chunk)
    return total


def main(spec: dict[str, Any]) -> dict[str, Any]:
    from cached_stores_factory import CachedStore

    key = spec["key"]
    local = part("TempfileStore")("bench", root=Path(spec["local_root"]))
    if spec.get("endpoint_url"):
        import boto3

        remote = part("S3Store")(
            bucketname=spec["bucket"],
            s3_region=S3_CREDENTIALS["region_name"],
            endpoint_url=spec["endpoint_url"],
            aws_access_key_id=S3_CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=S3_CREDENTIALS["aws_secret_access_key"],
        )
        client = boto3.client("s3", endpoint_url=spec["endpoint_url"], **S3_CREDENTIALS)

        def baseline() -> int:
            body = client.get_object(Bucket=spec["bucket"], Key=key)["Body"]
            with Path(spec["raw_path"]).open("wb") as out:
                total = 0
                for chunk in body.iter_chunks(CHUNK):
                    out.write(chunk)
                    total += len(chunk)
            return total
    else:
        remote = part("TempfileStore")("origin", root=Path(spec["remote_root"]))

        def baseline() -> int:
            with contextlib.ExitStack() as stack:
                entry = stack.enter_context(remote.open_read(key))
                out = stack.enter_context(Path(spec["raw_path"]).open("wb"))
                total = 0
                while chunk := entry.stream.read(CHUNK):
                    out.write(chunk)
                    total += len(chunk)
            return total

    cached = CachedStore(local, remote)

    def read_through() -> int:
        with cached.open(key, "rb") as handle:
            return drain(handle)

    baseline_growth, baseline_bytes = peak_growth_mib(baseline)
    miss_growth, miss_bytes = peak_growth_mib(read_through)
    hit_growth, hit_bytes = peak_growth_mib(read_through)
    stats = cached.stats()
    cached.close()
    return {
        "baseline_mib": baseline_growth,
        "miss_mib": miss_growth,
        "hit_mib": hit_growth,
        "bytes": [baseline_bytes, miss_bytes, hit_bytes],
        "remote_reads": stats["remote_reads"],
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
