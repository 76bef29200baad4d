"""A file tree served over HTTP(S) cached in Redis, the original Example 2 generalized:
`store = "fsspec"` with an `https://` URL (here a local HTTP origin; fsspec's HTTP filesystem
speaks both) as the remote, and Redis as the local store.

It starts a private redis-server and a local web server that answers ETag, If-None-Match
and Range, then reads through RedisStore + FsspecStore + TTLCache built from a config.  The
origin is read-only: a write is refused with a clear error.
"""

from __future__ import annotations

import os
import time

from cached_stores_factory.errors import StoreError
from cached_stores_factory.factories.cached_store_factory import CachedStoreFactory
from cached_stores_factory.testing.servers import running_http, running_redis

TTL = 1.0  # seconds: short, so the example can watch an entry expire

CONFIG = (
    """
[local]
store = "redis"
url = "${REDIS_URL}"
prefix = "http-example:"

[remote]
store = "fsspec"
url = "${ORIGIN}/"     # e.g. "https://data.example.org/releases/"
# headers = { Authorization = "Bearer ${TOKEN}" }   # a protected origin

[policy]
name = "ttl"
"""
    + f"interval = {TTL}\n"
)


def main() -> None:
    with running_redis() as redis, running_http() as origin:
        origin.put("releases/v1/data.json", b'{"rows": 3}')
        origin.put("releases/v1/readme.txt", b"the first release\n")
        os.environ.update(REDIS_URL=redis.url, ORIGIN=origin.url)
        cache = CachedStoreFactory.from_toml(CONFIG).build()

        def read(step: str, key: str) -> None:
            origin.forget()
            data = cache.get(key)
            statuses = origin.statuses()
            print(
                f"{step:<28} {key:<24} {len(data):>3} bytes  origin answered {statuses} "
                f"with {origin.bytes_sent('GET')} body bytes"
            )

        print(f"Example: RedisStore + FsspecStore({origin.url}/) + TTLCache({TTL})")
        print("files:", sorted(cache.remote.keys("releases/")))
        read("first read (miss)", "releases/v1/data.json")
        read("second read (hit)", "releases/v1/data.json")
        time.sleep(TTL + 0.2)
        read("expired, unchanged", "releases/v1/data.json")
        origin.put("releases/v1/data.json", b'{"rows": 4}')
        time.sleep(TTL + 0.2)
        read("expired, changed", "releases/v1/data.json")
        try:
            cache.put("releases/v1/new.txt", b"x")
        except StoreError as refused:
            print("write refused:", refused)
        cache.close()
        print("Example finished")


if __name__ == "__main__":
    main()
