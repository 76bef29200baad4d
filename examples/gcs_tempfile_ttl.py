"""A Google Cloud Storage bucket cached in temp files with a TTL, the original Example 1
generalized: `store = "fsspec"` with a `gs://` URL instead of S3.

It starts fake-gcs-server (the GCS emulator from its PyPI wheel) on a free loopback port,
uploads two objects, and reads them through TempfileStore + FsspecStore + TTLCache built
from a config.  It prints where each read's bytes came from, as the emulator's counting
proxy saw them: a miss, a hit that asks nothing, an expired copy revalidated with no body
bytes, and a changed object fetched again.
"""

from __future__ import annotations

import os
import tempfile
import time

from cached_stores_factory.factories.cached_store_factory import CachedStoreFactory
from cached_stores_factory.testing.servers import running_gcs
from cached_stores_factory_fsspec import FsspecStore

TTL = 1.0  # seconds: short, so the example can watch an entry expire

CONFIG = (
    """
[local]
store = "tempfile"
name = "gcs-example"
root = "${CACHE_DIR}"

[remote]
store = "fsspec"
url = "gs://${BUCKET}/reports"
endpoint_url = "${GCS_ENDPOINT}"   # omit for Google Cloud Storage itself
token = "anon"                     # or a service account's JSON file
project = "demo"

[policy]
name = "ttl"
"""
    + f"interval = {TTL}\n"
)


def main() -> None:
    with running_gcs() as gcs, tempfile.TemporaryDirectory() as cache_dir:
        bucket = gcs.new_bucket("reports")
        os.environ.update(BUCKET=bucket, GCS_ENDPOINT=gcs.proxy.endpoint_url, CACHE_DIR=cache_dir)
        owner = FsspecStore(f"gs://{bucket}/reports", **gcs.storage_options)
        owner.put("2024.csv", b"month,sales\n1,1000\n2,2000\n")
        owner.put("2025.csv", b"month,sales\n1,1100\n")

        cache = CachedStoreFactory.from_toml(CONFIG).build()
        log = gcs.proxy

        def read(step: str, key: str) -> None:
            log.forget()
            data = cache.get(key)
            media = log.bytes_sent("GET", "alt=media")
            print(
                f"{step:<28} {key:<9} {len(data):>4} bytes  requests={log.count()}  "
                f"body bytes from GCS={media}"
            )

        print(f"Example: TempfileStore + FsspecStore(gs://{bucket}/reports) + TTLCache({TTL})")
        read("first read (miss)", "2024.csv")
        read("second read (hit)", "2024.csv")
        time.sleep(TTL + 0.2)
        read("expired, unchanged", "2024.csv")
        owner.put("2024.csv", b"month,sales\n1,1000\n2,2000\n3,3000\n")
        time.sleep(TTL + 0.2)
        read("expired, changed", "2024.csv")
        stats = cache.stats()
        print("counters:", {name: stats[name] for name in ("hits", "misses", "revalidated")})
        cache.close()
        print("Example finished")


if __name__ == "__main__":
    main()
