"""FsspecStore against real servers: a local HTTP origin, fake-gcs-server and Azurite.

Requests and body bytes are counted where they arrive (the HTTP origin's own log, or the
counting proxy in front of each emulator), so "no request" and "no body bytes" are what
the server saw.  The emulators start once per session.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cached_stores_factory import CachedStore, CachedStoreFactory, MemoryStore
from cached_stores_factory.errors import EntryChangedError, RemoteError, StoreError
from cached_stores_factory.testing.servers import (
    AzuriteServer,
    GcsServer,
    HttpServer,
    RequestLog,
)
from cached_stores_factory.testing.stores import StoreConformance
from cached_stores_factory_fsspec import FsspecStore
from cached_stores_factory_fsspec import _store as store_module
from cached_stores_factory_policies import TTLCache

LARGE = 5 * 1024 * 1024 + 321  # more than one 4 MiB chunk


class Clock:
    """A policy clock the test moves by hand, starting at the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Remote:
    """One backend as the tests see it: a store on it, a way to publish an object there
    (as its owner would, not through a cache), its request log, and which requests carry
    object bodies."""

    name: str
    store: FsspecStore
    publish: Callable[[str, bytes], None]
    log: RequestLog
    data_requests: str  # a path fragment only the requests for object bodies have
    damage: Callable[[str], None]

    def body_bytes(self) -> int:
        return self.log.bytes_sent("GET", self.data_requests)


def _http_remote(server: HttpServer) -> Remote:
    server.clear()
    return Remote(
        "http",
        FsspecStore(f"{server.url}/"),
        server.put,
        server,
        "",
        server.damage,
    )


def _gcs_remote(server: GcsServer) -> Remote:
    store = FsspecStore(f"gs://{server.new_bucket()}/data", **server.storage_options)
    server.proxy.damaged = None
    server.proxy.forget()

    def damage(key: str) -> None:
        server.proxy.damaged = "alt=media"

    return Remote("gcs", store, store.put, server.proxy, "alt=media", damage)


def _azure_remote(server: AzuriteServer) -> Remote:
    store = FsspecStore(f"az://{server.new_container()}/data", **server.storage_options)
    server.proxy.damaged = None
    server.proxy.forget()

    def damage(key: str) -> None:
        server.proxy.damaged = key

    return Remote("azure", store, store.put, server.proxy, "", damage)


@pytest.fixture(params=["http", "gcs", "azure"])
def remote(request: pytest.FixtureRequest) -> Iterator[Remote]:
    if request.param == "http":
        made = _http_remote(request.getfixturevalue("http_server"))
    elif request.param == "gcs":
        made = _gcs_remote(request.getfixturevalue("gcs_server"))
    else:
        made = _azure_remote(request.getfixturevalue("azurite_server"))
    yield made
    if request.param != "http":
        made.store.clear()


def cached(remote: Remote) -> tuple[CachedStore, Clock]:
    """A TTL of 10 s over a memory store, both on a clock the test moves."""
    clock = Clock()
    policy = TTLCache(interval=10.0, clock=clock)
    return CachedStoreFactory(MemoryStore(clock=clock), remote.store, policy).build(), clock


# -- the four promises, per backend ------------------------------------------------------------


def test_read_through_second_read_sends_no_request(remote: Remote) -> None:
    remote.publish("docs/a.txt", b"first version")
    cache, _ = cached(remote)
    remote.log.forget()
    assert cache.get("docs/a.txt") == b"first version"
    first = remote.log.count()
    assert first >= 1 and remote.body_bytes() == len(b"first version")
    assert cache.get("docs/a.txt") == b"first version"
    assert remote.log.count() == first


def test_revalidating_an_unchanged_object_moves_no_body_bytes(remote: Remote) -> None:
    remote.publish("obj", b"x" * 10_000)
    cache, clock = cached(remote)
    assert cache.get("obj") == b"x" * 10_000
    clock.now += 11
    remote.log.forget()
    assert cache.get("obj") == b"x" * 10_000
    assert remote.log.count() == 1  # one conditional GET, or one metadata request
    assert remote.body_bytes() == 0
    assert cache.stats()["revalidated"] == 1


def test_a_changed_object_is_fetched_again(remote: Remote) -> None:
    remote.publish("obj", b"version 1")
    cache, clock = cached(remote)
    assert cache.get("obj") == b"version 1"
    remote.publish("obj", b"version 2, longer")
    clock.now += 11
    remote.log.forget()
    assert cache.get("obj") == b"version 2, longer"
    assert remote.body_bytes() == len(b"version 2, longer")
    assert cache.stats()["revalidated"] == 0


def test_a_ranged_read_of_a_large_object_moves_only_its_bytes(remote: Remote) -> None:
    body = bytes(range(256)) * (LARGE // 256) + b"tail"
    remote.publish("large.bin", body)
    remote.log.forget()
    start = 4 * 1024 * 1024 + 7
    with remote.store.open_range("large.bin", start, start + 1000) as entry:
        assert entry.read() == body[start : start + 1000]
        assert entry.stat.size == len(body)
        version = entry.stat.etag
    assert version is not None
    assert remote.body_bytes() == 1000
    remote.publish("large.bin", body[::-1])
    with pytest.raises(EntryChangedError):
        remote.store.open_range("large.bin", start, start + 1000, if_match=version)


def test_a_ranged_read_through_the_cache_keeps_its_blocks(remote: Remote) -> None:
    body = bytes(range(256)) * (LARGE // 256)
    remote.publish("large.bin", body)
    cache, _ = cached(remote)
    cache.partials.block_size = 64 * 1024
    cache.partials.whole_limit = 1024 * 1024
    remote.log.forget()
    reader = cache.partials.open("large.bin")
    assert reader is not None
    reader.stream.seek(3 * 1024 * 1024)
    assert reader.stream.read(100) == body[3 * 1024 * 1024 : 3 * 1024 * 1024 + 100]
    moved = remote.body_bytes()
    assert 0 < moved <= 2 * 64 * 1024
    again = cache.partials.open("large.bin")
    assert again is not None
    again.stream.seek(3 * 1024 * 1024)
    assert again.stream.read(100) == body[3 * 1024 * 1024 : 3 * 1024 * 1024 + 100]
    assert remote.body_bytes() == moved


def test_a_whole_read_spans_chunks_and_checks_the_backend_checksum(remote: Remote) -> None:
    body = bytes(range(256)) * (LARGE // 256)
    remote.publish("large.bin", body)
    remote.log.forget()
    with remote.store.open_read("large.bin") as entry:
        assert entry.read() == body
    assert remote.body_bytes() == len(body)


def test_damaged_bytes_in_transit_are_refused(remote: Remote) -> None:
    remote.publish("small", b"the right bytes")
    remote.damage("small")
    with pytest.raises(RemoteError, match="checksum"):
        remote.store.get("small")


def test_a_change_between_chunks_is_refused(
    remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CHUNK", 64 * 1024)
    remote.publish("obj", b"a" * 200_000)
    with remote.store.open_read("obj") as entry:
        assert entry.read(1000) == b"a" * 1000
        remote.publish("obj", b"b" * 200_000)
        with pytest.raises(RemoteError, match="changed while it was read"):
            entry.read()


def test_an_empty_object_reads_without_logging_an_error(
    remote: Remote, caplog: pytest.LogCaptureFixture
) -> None:
    remote.publish("empty", b"")
    with caplog.at_level(logging.DEBUG):
        assert remote.store.get("empty") == b""
        with remote.store.open_range("empty", 0, 10) as entry:
            assert entry.read() == b""
            assert entry.stat.size == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("backend", ["gcs", "azure"])
def test_keys_a_url_parser_would_change_stay_distinct(
    backend: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("gcs_server" if backend == "gcs" else "azurite_server")
    made = _gcs_remote(server) if backend == "gcs" else _azure_remote(server)
    keys = ["x", "x?", "x?y", "x#y", "q/?", "sp ace/+plus%25"]
    for index, key in enumerate(keys):
        made.store.put(key, str(index).encode())
    assert [made.store.get(key) for key in keys] == [str(i).encode() for i in range(len(keys))]
    assert sorted(made.store.keys()) == sorted(keys)
    made.store.clear()


@pytest.mark.parametrize("backend", ["gcs", "azure"])
def test_a_write_whose_source_breaks_leaves_the_old_object(
    backend: str, request: pytest.FixtureRequest, breaking_stream: type[Any]
) -> None:
    server = request.getfixturevalue("gcs_server" if backend == "gcs" else "azurite_server")
    made = _gcs_remote(server) if backend == "gcs" else _azure_remote(server)
    made.store.put("k", b"old")
    with pytest.raises(RemoteError, match="the source broke"):
        made.store.put_stream("k", breaking_stream(LARGE, LARGE - 1000))
    assert made.store.get("k") == b"old"
    assert list(made.store.keys()) == ["k"]
    made.store.clear()


# -- HTTP: read-only, and Last-Modified where there is no ETag -------------------------------


def test_http_refuses_writes_naming_the_url(http_server: HttpServer) -> None:
    store = FsspecStore(http_server.url)
    for write in (lambda: store.put("k", b"v"), lambda: store.delete("k")):
        with pytest.raises(StoreError, match=rf"{http_server.url}/k: .*read-only"):
            write()


def test_http_lists_the_index_and_reads_keys_with_odd_characters(
    http_server: HttpServer,
) -> None:
    http_server.clear()
    for name in ("a/1.txt", "sp ace/+plus%25", "ключ"):
        http_server.put(name, name.encode())
    store = FsspecStore(http_server.url)
    assert sorted(store.keys()) == sorted(["a/1.txt", "sp ace/+plus%25", "ключ"])
    for name in ("sp ace/+plus%25", "ключ"):
        assert store.get(name) == name.encode()


def test_http_without_etags_revalidates_by_last_modified() -> None:
    from cached_stores_factory.testing.servers import running_http

    with running_http(etags=False) as server:
        server.put("page", b"v1")
        remote = Remote("http", FsspecStore(server.url), server.put, server, "", server.damage)
        cache, clock = cached(remote)
        assert cache.get("page") == b"v1"
        clock.now += 11
        server.forget()
        assert cache.get("page") == b"v1"
        assert server.statuses() == [304]
        server.put("page", b"v2")  # a later Last-Modified
        clock.now += 11
        assert cache.get("page") == b"v2"


def test_a_server_that_ignores_preconditions_still_never_splices_or_refetches() -> None:
    from cached_stores_factory.testing.servers import running_http

    with running_http(preconditions=False) as server:
        server.put("obj", b"0123456789")
        store = FsspecStore(server.url)
        with store.open_range("obj", 2, 5) as entry:
            old = entry.stat.etag
        assert old is not None
        assert store.open_read_if_changed("obj", old) is None  # the same ETag came back
        server.put("obj", b"abcdefghij")
        with pytest.raises(EntryChangedError):  # the 206 carries the new ETag
            store.open_range("obj", 2, 5, if_match=old)
        assert server.statuses() == [206, 206, 206]


# -- errors name the URL, never the credentials ------------------------------------------------


def test_a_wrong_azure_key_fails_naming_the_url_not_the_key(
    azurite_server: AzuriteServer,
) -> None:
    container = azurite_server.new_container()
    wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    store = FsspecStore(
        f"az://{container}/p", connection_string=azurite_server.connection_string(wrong_key)
    )
    with pytest.raises(RemoteError) as raised:
        store.get("some/key")
    assert f"az://{container}/p/some/key" in str(raised.value)
    assert wrong_key not in str(raised.value)
    assert wrong_key not in repr(store)


def test_an_unreachable_server_fails_naming_the_url_not_the_secrets() -> None:
    from cached_stores_factory.testing.servers import free_port

    url = f"http://reader:pa55word@127.0.0.1:{free_port()}/data"
    store = FsspecStore(url, headers={"Authorization": "Bearer t0ken-value"})
    with pytest.raises(RemoteError) as raised:
        store.get("some/key")
    message = str(raised.value)
    assert message.startswith("http://reader:***@127.0.0.1:")
    assert "/data/some/key" in message
    for secret in ("pa55word", "t0ken-value"):
        assert secret not in message
        assert secret not in repr(store)


# -- the conformance suite, on the emulators -----------------------------------------------------


class TestGcsConformance(StoreConformance):
    large_size = LARGE

    @pytest.fixture
    def store(self, gcs_server: GcsServer) -> Iterator[FsspecStore]:
        with FsspecStore(f"gs://{gcs_server.new_bucket()}/c", **gcs_server.storage_options) as s:
            yield s


class TestAzureConformance(StoreConformance):
    large_size = LARGE

    @pytest.fixture
    def store(self, azurite_server: AzuriteServer) -> Iterator[FsspecStore]:
        container = azurite_server.new_container()
        with FsspecStore(f"az://{container}/c", **azurite_server.storage_options) as s:
            yield s


def test_as_a_local_store_it_keeps_the_origin_tag(gcs_server: GcsServer) -> None:
    store = FsspecStore(f"gs://{gcs_server.new_bucket()}/cache", **gcs_server.storage_options)
    stat = store.put_stream("k", io.BytesIO(b"v"), etag='"origin-etag"')
    assert stat.etag == '"origin-etag"'
    assert store.stat("k").etag == '"origin-etag"'
    with store.open_read("k") as entry:
        assert entry.stat.etag == '"origin-etag"'


# -- an emulator that can't start: a clear skip outside CI, a failure under CI=true -------------


@pytest.mark.parametrize("ci", ["", "true"])
def test_a_missing_azurite_skips_with_how_to_install_or_fails_under_ci(
    ci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cached_stores_factory.testing import servers

    monkeypatch.setenv("PATH", str(tmp_path))  # no azurite-blob, no node
    monkeypatch.setattr(servers.sys, "prefix", str(tmp_path))  # nothing under .venv/azurite
    monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="Azurite is not available: make test installs it"):
        next(servers._required(servers.running_azurite()))
