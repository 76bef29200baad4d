"""Remotes through the fsspec store: per backend, a tempfile hit beside the backend's own
fsspec read of the same object, and the body bytes of one unchanged revalidation.

Each backend is the test suite's server (a local HTTP origin, fake-gcs-server, Azurite
behind its counting proxy); one that can't start turns its rows into "n/a" rows.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cached_stores_factory import CachedStore
from cached_stores_factory.testing.servers import (
    RequestLog,
    ServiceUnavailable,
    running_azurite,
    running_gcs,
    running_http,
)

from ._harness import MiB, Row, Sizes, Target, median_times, unavailable
from ._parts import PartMissing, part

HIT_TARGET = Target("ratio", "<=", 1.0)
ZERO_BYTES = Target("value", "==", 0, "bytes")
KEY = "bench/object.bin"


def hit_figure(backend: str) -> str:
    return f"fsspec store, {backend}: tempfile hit 1 MiB vs the backend's own fsspec read"


def bytes_figure(backend: str) -> str:
    return f"fsspec store, {backend}: body bytes per unchanged revalidation, 1 MiB"


# (the store on the backend, its request log, the fragment of a body request's path, and
# the backend's own fsspec read of KEY)
_Setup = tuple[Any, RequestLog, str, Callable[[], bytes]]


@contextlib.contextmanager
def _http(data: bytes) -> Iterator[_Setup]:
    import fsspec

    from cached_stores_factory_fsspec import FsspecStore

    with running_http() as origin:
        origin.put(KEY, data)
        own = fsspec.filesystem("http", skip_instance_cache=True)
        yield FsspecStore(origin.url), origin, "", lambda: own.cat_file(f"{origin.url}/{KEY}")


@contextlib.contextmanager
def _gcs(data: bytes) -> Iterator[_Setup]:
    from gcsfs.core import GCSFileSystem

    from cached_stores_factory_fsspec import FsspecStore

    with running_gcs() as gcs:
        bucket = gcs.new_bucket("bench")
        store = FsspecStore(f"gs://{bucket}", **gcs.storage_options)
        store.put(KEY, data)
        own = GCSFileSystem(skip_instance_cache=True, **gcs.storage_options)
        yield store, gcs.proxy, "alt=media", lambda: own.cat_file(f"{bucket}/{KEY}")


@contextlib.contextmanager
def _azure(data: bytes) -> Iterator[_Setup]:
    from adlfs import AzureBlobFileSystem

    from cached_stores_factory_fsspec import FsspecStore

    with running_azurite() as azurite:
        container = azurite.new_container("bench")
        store = FsspecStore(f"az://{container}", **azurite.storage_options)
        store.put(KEY, data)
        own = AzureBlobFileSystem(skip_instance_cache=True, **azurite.storage_options)
        yield store, azurite.proxy, "", lambda: own.cat_file(f"{container}/{KEY}")


BACKENDS: dict[str, Callable[[bytes], contextlib.AbstractContextManager[_Setup]]] = {
    "HTTP": _http,
    "GCS (fake-gcs-server)": _gcs,
    "Azure (Azurite)": _azure,
}


def run(sizes: Sizes) -> list[Row]:
    rows: list[Row] = []
    data = os.urandom(MiB)
    for backend, setup in BACKENDS.items():
        figures = [(hit_figure(backend), HIT_TARGET), (bytes_figure(backend), ZERO_BYTES)]
        try:
            tempfile_store = part("TempfileStore")
            with setup(data) as (remote, log, bodies, own_read):
                rows.extend(_measure(sizes, backend, tempfile_store, remote, log, bodies, own_read))
        except (ServiceUnavailable, PartMissing, ImportError) as exc:
            rows.extend(unavailable(figure, target, str(exc)) for figure, target in figures)
    return rows


def _measure(
    sizes: Sizes,
    backend: str,
    tempfile_store: Any,
    remote: Any,
    log: RequestLog,
    bodies: str,
    own_read: Callable[[], bytes],
) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="csf-bench-remote-") as tmp:
        cached = CachedStore(tempfile_store("bench", root=Path(tmp)), remote)
        expected = own_read()
        if cached.get(KEY) != expected:  # the miss
            raise AssertionError(f"{backend}: the cache read other bytes than the backend")
        before = cached.stats()["remote_reads"]
        medians = median_times(
            {"hit": lambda: cached.get(KEY), "own": own_read},
            rounds=sizes.remote_rounds,
            inner=1,
            warmup=3,
        )
        if cached.stats()["remote_reads"] != before:
            raise AssertionError(f"{backend}: a timed hit reached the remote")
        etag = remote.stat(KEY).etag
        sent = log.bytes_sent("GET", bodies)
        if remote.open_read_if_changed(KEY, etag) is not None:
            raise AssertionError(f"{backend}: an unchanged object was reported changed")
        sent = log.bytes_sent("GET", bodies) - sent
        cached.close()
    return [
        Row(
            hit_figure(backend),
            HIT_TARGET,
            medians["hit"] * 1e3,
            medians["own"] * 1e3,
            "ms/op",
            f"CachedStore(TempfileStore, FsspecStore).get beside {type(remote._fs).__name__}"
            ".cat_file of the same object, on loopback (an emulator is reached through the "
            "test suite's counting proxy)",
        ),
        Row(
            bytes_figure(backend),
            ZERO_BYTES,
            sent,
            unit="bytes",
            note="object body bytes the server sent for one FsspecStore.open_read_if_changed",
        ),
    ]
