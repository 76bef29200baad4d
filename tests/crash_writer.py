"""The process the crash test kills: writes version after version of one key, forever.

    python tests/crash_writer.py ENDPOINT BUCKET ROOT KEY FIRST_VERSION

Each value is a complete, self-checking record (see `value`), written through a cached store
of a TempfileStore over an S3Store at ENDPOINT.  After each commit the writer prints the
version it committed; it prints "ready" once the store is built.  It never stops by itself.
"""

from __future__ import annotations

import random
import struct
import sys

MiB = 1024 * 1024
HEADER = struct.Struct("<4sIQ")  # magic, version, body length
MAGIC = b"CRSH"


def value(version: int) -> bytes:
    """Version `version`'s bytes: a header, then 4-8 MiB only that version has."""
    rng = random.Random(version)
    size = rng.randrange(4 * MiB, 8 * MiB + 1)
    return HEADER.pack(MAGIC, version, size) + rng.randbytes(size)


def version_of(data: bytes) -> int:
    """The version `data` is, complete; ValueError if it is torn, short or anything else."""
    if len(data) < HEADER.size:
        raise ValueError(f"short: {len(data)} bytes")
    magic, version, size = HEADER.unpack_from(data)
    if magic != MAGIC or len(data) != HEADER.size + size:
        raise ValueError(f"torn or short: {len(data)} bytes, header says {size}")
    if data != value(version):
        raise ValueError(f"version {version}'s bytes differ from what it wrote")
    checked: int = version
    return checked


def cached_store(endpoint: str, bucket: str, root: str) -> object:
    from cached_stores_factory import CachedStoreFactory
    from cached_stores_factory_s3 import S3Store
    from cached_stores_factory_tempfile import TempfileStore

    remote = S3Store(
        bucket,
        s3_region="eu-central-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        multipart_threshold=5 * MiB,  # some versions go multipart, some in one PUT
        multipart_chunksize=5 * MiB,
    )
    return CachedStoreFactory(TempfileStore("crash", root=root), remote).build()


def main(endpoint: str, bucket: str, root: str, key: str, first: str) -> None:
    store = cached_store(endpoint, bucket, root)
    print("ready", flush=True)
    version = int(first)
    while True:
        with store.open(key, "wb") as handle:  # type: ignore[attr-defined]
            handle.write(value(version))
        print(version, flush=True)
        version += 1


if __name__ == "__main__":
    main(*sys.argv[1:])
