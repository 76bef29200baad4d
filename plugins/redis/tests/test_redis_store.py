"""RedisStore against a real redis-server: the conformance suite, TTLs, prefixes, errors."""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from cached_stores_factory import CachedStoreFactory, Store
from cached_stores_factory.errors import ConfigError, CorruptEntryError, StoreError
from cached_stores_factory.plugins import registry
from cached_stores_factory.testing.faults import RedisControl
from cached_stores_factory.testing.servers import (
    RedisCluster,
    RedisServer,
    free_port,
    running_redis_cluster,
    start_redis,
    stop_process,
)
from cached_stores_factory.testing.stores import FenceConformance, StoreConformance
from cached_stores_factory_redis import RedisStore

pytestmark = pytest.mark.redis


def unique_prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


def reply(server: RedisServer, *args: str) -> str:
    return server.command(*args).decode()


def command_counts(server: RedisServer) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT, from INFO commandstats."""
    counts = {}
    for line in reply(server, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_") :].split(":", 1)
            counts[name] = int(fields.split(",")[0].split("=")[1])
    return {k: v for k, v in counts.items() if k not in ("info", "config|resetstat", "config")}


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[RedisStore]:
    with RedisStore(redis_server.host, redis_server.port, prefix=unique_prefix()) as store:
        yield store
        store.clear()


class TestRedisStoreConformance(StoreConformance, FenceConformance):
    @pytest.fixture
    def store(self, redis_server: RedisServer) -> Iterator[RedisStore]:
        with RedisStore(redis_server.host, redis_server.port, prefix=unique_prefix()) as store:
            yield store
            store.clear()

    def lose_fences(self, store: Store, key: str) -> None:
        assert isinstance(store, RedisStore)
        assert store.redis_client.delete(store._fence_name(key)) == 1

    def opener(self, store: Store) -> Callable[[], Store]:
        assert isinstance(store, RedisStore)
        return functools.partial(
            RedisStore, store.host, store.port, prefix=store.prefix, cluster=store.cluster
        )


def test_registered_under_redis_by_its_distribution():
    component = registry.get("store", "redis")
    assert component.factory is RedisStore
    assert component.distribution == "cached-stores-factory-redis"


def test_loading_the_plugin_does_not_import_redis():
    code = (
        "import sys, cached_stores_factory_redis; "
        "assert 'redis' not in sys.modules, 'redis imported at plugin import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ex_sets_a_ttl_on_every_entry(redis_server: RedisServer):
    prefix = unique_prefix()
    with RedisStore(redis_server.host, redis_server.port, ex=5 * 60, prefix=prefix) as store:
        assert store.native_expiry == 300
        store.put("a", b"1")
        store.put_stream("b/c", io.BytesIO(b"2"))
        for key in ("a", "b/c"):
            ttl = int(reply(redis_server, "PTTL", prefix + key)[1:])
            assert 0 < ttl <= 300_000
        store.clear()


def test_overwrite_without_ex_drops_the_old_ttl(redis_server: RedisServer):
    prefix = unique_prefix()
    with RedisStore(redis_server.host, redis_server.port, ex=60, prefix=prefix) as expiring:
        expiring.put("k", b"old")
    with RedisStore(redis_server.host, redis_server.port, prefix=prefix) as lasting:
        assert lasting.native_expiry is None
        lasting.put("k", b"new")
        assert reply(redis_server, "TTL", prefix + "k").strip() == ":-1"
        lasting.clear()


def test_entries_expire(redis_server: RedisServer):
    with RedisStore(redis_server.host, redis_server.port, ex=0.2, prefix=unique_prefix()) as store:
        store.put("k", b"v")
        assert "k" in store
        time.sleep(0.5)
        assert "k" not in store
        assert list(store.keys()) == []


def test_prefixes_isolate_caches_on_one_server(redis_server: RedisServer):
    with (
        RedisStore(redis_server.host, redis_server.port, prefix=unique_prefix()) as one,
        RedisStore(redis_server.host, redis_server.port, prefix=unique_prefix()) as two,
    ):
        one.put("shared/name", b"one")
        two.put("shared/name", b"two")
        two.put("only/two", b"2")
        assert one.get("shared/name") == b"one"
        assert list(one.keys()) == ["shared/name"]
        assert "only/two" not in one
        assert one.clear() == 1
        assert two.get("shared/name") == b"two"
        assert sorted(two.keys()) == ["only/two", "shared/name"]
        two.clear()


def test_glob_characters_in_prefixes_match_literally(redis_server: RedisServer):
    base = unique_prefix()
    with (
        RedisStore(redis_server.host, redis_server.port, prefix=base + "[a]*:") as star,
        RedisStore(redis_server.host, redis_server.port, prefix=base + "a:") as plain,
    ):
        star.put("k?", b"1")
        plain.put("k1", b"2")
        assert list(star.keys()) == ["k?"]
        assert list(star.keys("k")) == ["k?"]
        star.clear()
        plain.clear()


def test_foreign_keys_under_the_prefix_are_not_listed(store: RedisStore, redis_server: RedisServer):
    store.put("mine", b"v")
    reply(redis_server, "SET", store.prefix + "a-plain-string", "x")
    assert list(store.keys()) == ["mine"]
    reply(redis_server, "DEL", store.prefix + "a-plain-string")


def test_a_hit_is_one_round_trip_and_listing_uses_scan(
    store: RedisStore, redis_server: RedisServer
):
    store.put("k", b"value")
    reply(redis_server, "CONFIG", "RESETSTAT")
    with store.open_read("k") as entry:
        assert entry.read() == b"value"
        assert entry.stat.size == 5
        assert entry.stat.digest is not None
    assert command_counts(redis_server) == {"hmget": 1}
    reply(redis_server, "CONFIG", "RESETSTAT")
    assert list(store.keys()) == ["k"]
    counts = command_counts(redis_server)
    assert "keys" not in counts
    assert counts.get("scan", 0) >= 1


def test_metadata_is_kept_with_the_entry(store: RedisStore, redis_server: RedisServer):
    written = store.put_stream("k", io.BytesIO(b"data"), etag='"e1"')
    with RedisStore(redis_server.host, redis_server.port, prefix=store.prefix) as other:
        assert other.stat("k") == written
        assert written.etag == '"e1"'


def test_values_over_the_limit_are_refused(redis_server: RedisServer):
    with RedisStore(
        redis_server.host, redis_server.port, prefix=unique_prefix(), max_value_bytes=1000
    ) as store:
        store.put("fits", b"x" * 1000)
        with pytest.raises(StoreError, match="max_value_bytes=1000"):
            store.put("too/big", b"x" * 1001)
        with pytest.raises(StoreError, match="max_value_bytes=1000"):
            store.put_stream("too/big", io.BytesIO(b"x" * 5000))
        assert list(store.keys()) == ["fits"]
        store.clear()


def test_url_connects_and_db_is_honoured(redis_server: RedisServer):
    prefix = unique_prefix()
    with RedisStore(url=f"redis://{redis_server.host}:{redis_server.port}/3", prefix=prefix) as s:
        assert (s.host, s.port, s.db) == (redis_server.host, redis_server.port, 3)
        s.put("k", b"v")
        assert reply(redis_server, "EXISTS", prefix + "k").strip() == ":0"  # not in db 0
        assert s.get("k") == b"v"
        s.clear()


def test_client_settings_are_pinned():
    import redis

    connection = RedisStore()._client.connection_pool.connection_kwargs
    assert (connection["socket_connect_timeout"], connection["socket_timeout"]) == (0.25, 0.25)
    assert connection["health_check_interval"] == 30
    retry = connection["retry"]
    assert retry._retries == 1
    assert (retry._backoff._base, retry._backoff._cap) == (0.01, 0.05)
    assert {redis.ConnectionError, redis.TimeoutError} <= set(retry._supported_errors)


def test_timeouts_and_retries_are_options():
    store = RedisStore(socket_timeout=2.0, socket_connect_timeout=3.0, retries=4)
    connection = store._client.connection_pool.connection_kwargs
    assert (connection["socket_timeout"], connection["socket_connect_timeout"]) == (2.0, 3.0)
    assert connection["retry"]._retries == 4


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("socket_timeout", 0),
        ("socket_timeout", "1"),
        ("socket_connect_timeout", -1),
        ("retries", -1),
        ("retries", 1.5),
        ("retries", True),
    ],
)
def test_bad_timeouts_are_config_errors_naming_the_option(option: str, value: object):
    with pytest.raises(ConfigError, match=option):
        RedisStore(**{option: value})  # type: ignore[arg-type]


def test_keyword_arguments_override_the_pinned_settings():
    assert (
        RedisStore(health_check_interval=5)._client.connection_pool.connection_kwargs[
            "health_check_interval"
        ]
        == 5
    )


@pytest.mark.parametrize(
    ("argument", "value", "problem"),
    [
        ("db", -1, "must be a whole number >= 0, not -1"),
        ("port", 0, "must be a whole number from 1 to 65535, not 0"),
        ("port", 65536, "must be a whole number from 1 to 65535, not 65536"),
        ("ex", 0, "must be a positive number, not 0"),
        ("ex", -5, "must be a positive number, not -5"),
        ("lease_timeout", 0.0, "must be a positive number, not 0.0"),
        ("socket_connect_timeout", float("nan"), "must be a positive number, not nan"),
        ("retries", -1, "must be a whole number >= 0, not -1"),
        ("max_value_bytes", 0, "must be a whole number >= 1, not 0"),
    ],
)
def test_a_value_out_of_range_is_refused_before_any_connection(
    argument: str, value: object, problem: str, monkeypatch: pytest.MonkeyPatch
):
    def no_client(*args: object, **kwargs: object) -> None:
        raise AssertionError("a client was made")

    monkeypatch.setattr(redis.Redis, "__init__", no_client)
    config = {"local": {"store": "memory"}, "remote": {"store": "redis", argument: value}}
    with pytest.raises(ConfigError) as caught:
        CachedStoreFactory.from_config(config).build()
    assert str(caught.value) == f"config: [remote] store 'redis' argument {argument!r}: {problem}"
    with pytest.raises(ConfigError) as caught:
        RedisStore(**{argument: value})  # type: ignore[arg-type]
    assert str(caught.value) == f"RedisStore argument {argument!r}: {problem}"


SECRET = "pa55-w0rd-s3cret"


def test_connection_failure_names_host_and_port_never_the_password():
    port = free_port()  # nothing listens here
    store = RedisStore("127.0.0.1", port, password=SECRET, prefix=unique_prefix())
    assert SECRET not in repr(store)
    with pytest.raises(StoreError) as caught:
        store.get("k")
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert SECRET not in message
    assert caught.value.__cause__ is None  # redis-py's own exception is not chained in


def test_url_password_stays_out_of_errors_and_repr():
    port = free_port()
    store = RedisStore(url=f"redis://:{SECRET}@127.0.0.1:{port}/0")
    assert SECRET not in repr(store)
    with pytest.raises(StoreError) as caught:
        store.put("k", b"v")
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_rejected_password_is_a_store_error_without_it():
    process, server = start_redis()
    try:
        reply(server, "CONFIG", "SET", "requirepass", "the-right-one")
        store = RedisStore(server.host, server.port, password=SECRET)
        with pytest.raises(StoreError) as caught:
            store.get("k")
        assert f"{server.host}:{server.port}" in str(caught.value)
        assert SECRET not in str(caught.value)
        with RedisStore(server.host, server.port, password="the-right-one") as allowed:
            allowed.put("k", b"v")
            assert allowed.get("k") == b"v"
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- Redis Cluster ---------------------------------------------------------------------------


class TestRedisClusterStoreConformance(TestRedisStoreConformance):
    @pytest.fixture
    def store(self, redis_cluster: RedisCluster) -> Iterator[RedisStore]:
        with RedisStore(
            redis_cluster.host, redis_cluster.port, cluster=True, prefix=unique_prefix()
        ) as store:
            yield store
            store.clear()


def cluster_command_counts(cluster: RedisCluster) -> dict[str, int]:
    """Calls per command summed over the nodes since the last CONFIG RESETSTAT."""
    totals: dict[str, int] = {}
    for node in cluster.nodes:
        for name, count in command_counts(node).items():
            totals[name] = totals.get(name, 0) + count
    return {k: v for k, v in totals.items() if k not in ("cluster|slots", "cluster|nodes")}


def test_cluster_entries_spread_over_every_primary_and_keys_scans_them_all(
    redis_cluster: RedisCluster,
):
    prefix = unique_prefix()
    with RedisStore(url=redis_cluster.url, cluster=True, prefix=prefix) as store:
        assert store.cluster
        assert "cluster=True" in repr(store)
        written = {f"dir/{n}": f"value {n}".encode() for n in range(60)}
        for key, data in written.items():
            store.put(key, data)
        held = [int(reply(node, "DBSIZE")[1:]) for node in redis_cluster.nodes]
        assert all(count > 0 for count in held), held  # every primary holds some
        assert sorted(store.keys()) == sorted(written)
        assert sorted(store.keys("dir/1")) == sorted(k for k in written if k.startswith("dir/1"))
        assert store.get("dir/7") == b"value 7"
        assert store.clear() == 60
        assert list(store.keys()) == []


def test_a_cluster_hit_is_one_round_trip(redis_cluster: RedisCluster):
    with RedisStore(
        redis_cluster.host, redis_cluster.port, cluster=True, prefix=unique_prefix()
    ) as store:
        store.put("k", b"value")
        redis_cluster.command("CONFIG", "RESETSTAT")
        with store.open_read("k") as entry:
            assert entry.read() == b"value"
            assert entry.stat.digest is not None
        assert cluster_command_counts(redis_cluster) == {"hmget": 1}
        store.clear()


def test_a_cluster_write_is_one_transaction_with_its_expiry(redis_cluster: RedisCluster):
    prefix = unique_prefix()
    with RedisStore(
        redis_cluster.host, redis_cluster.port, ex=60, cluster=True, prefix=prefix
    ) as store:
        store.put_stream("a/b", io.BytesIO(b"data"), etag='"e"')
        ttls = [node.command("PTTL", prefix + "a/b") for node in redis_cluster.nodes]
        # The node that owns the key answers with the TTL; the others redirect (MOVED).
        owned = [int(t[1:]) for t in ttls if t.startswith(b":")]
        assert len(owned) == 1 and 0 < owned[0] <= 60_000, ttls
        assert store.stat("a/b").etag == '"e"'
        store.clear()


def test_cluster_refuses_a_database_number(redis_cluster: RedisCluster):
    with pytest.raises(ConfigError, match="only db 0"):
        RedisStore(redis_cluster.host, redis_cluster.port, db=2, cluster=True)
    with pytest.raises(ConfigError, match="only db 0"):
        RedisStore(url=f"redis://{redis_cluster.host}:{redis_cluster.port}/3", cluster=True)


def test_an_unreachable_cluster_is_a_store_error_without_the_password():
    port = free_port()
    with pytest.raises(StoreError) as caught:
        RedisStore(url=f"redis://:{SECRET}@127.0.0.1:{port}", cluster=True)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert SECRET not in str(caught.value)


# -- TLS ---------------------------------------------------------------------------------------


def make_tls_files(directory: Path) -> dict[str, Path]:
    """A self-signed CA and a server certificate it signed, for 127.0.0.1."""
    files = {name: directory / name for name in ("ca.crt", "ca.key", "server.crt", "server.key")}
    csr = directory / "server.csr"
    extensions = directory / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=csf test CA",
        "-keyout",
        files["ca.key"],
        "-out",
        files["ca.crt"],
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        files["server.key"],
        "-out",
        csr,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        files["ca.crt"],
        "-CAkey",
        files["ca.key"],
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        extensions,
        "-out",
        files["server.crt"],
    )
    return files


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A redis-server with a TLS port (certificate signed by a test CA); yields (port, CA file)."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("openssl is not available to make a test CA (and CI=true)")
        pytest.skip("openssl is not available to make a test CA")
    files = make_tls_files(tmp_path_factory.mktemp("tls"))
    tls_port = free_port()
    process, _ = start_redis(
        options=(
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(files["server.crt"]),
            "--tls-key-file", str(files["server.key"]),
            "--tls-ca-cert-file", str(files["ca.crt"]),
            "--tls-auth-clients", "no",
        )
    )  # fmt: skip
    try:
        yield tls_port, files["ca.crt"]
    finally:
        stop_process(process)


def test_tls_with_a_ca_file(tls_redis: tuple[int, Path]):
    port, ca_file = tls_redis
    with RedisStore(
        url=f"rediss://127.0.0.1:{port}/0", ssl_ca_certs=str(ca_file), prefix=unique_prefix()
    ) as store:
        store.put("k", b"over tls")
        assert store.get("k") == b"over tls"
        store.clear()


def test_tls_refuses_a_server_the_ca_did_not_sign(tls_redis: tuple[int, Path]):
    port, _ = tls_redis
    store = RedisStore(url=f"rediss://127.0.0.1:{port}/0", prefix=unique_prefix())
    with pytest.raises(StoreError, match="certificate verify failed"):
        store.get("k")


def test_running_redis_cluster_starts_three_primaries_and_stops_them():
    with running_redis_cluster() as cluster:
        assert len(cluster.nodes) == 3
        assert all(node.port + 10000 < 65536 for node in cluster.nodes)  # the bus ports exist
        slots = [reply(node, "CLUSTER", "INFO") for node in cluster.nodes]
        assert all("cluster_slots_assigned:16384" in info for info in slots)
    for node in cluster.nodes:
        with pytest.raises(OSError):
            node.command("PING")


# -- integrity: the value's checksum is checked on every read --------------------------------


def raw_client(server: RedisServer) -> redis.Redis:
    return redis.Redis(server.host, server.port)


def test_a_changed_value_is_a_corrupt_entry_never_served(
    store: RedisStore, redis_server: RedisServer
):
    store.put("k", b"the value")
    raw_client(redis_server).hset(store.prefix + "k", "d", b"the valuE")
    for read in (store.get, lambda key: store.open_read(key).read()):
        with pytest.raises(CorruptEntryError, match="does not match its checksum"):
            read("k")
    raw_client(redis_server).hset(store.prefix + "k", "d", b"the value, longer")
    with pytest.raises(CorruptEntryError, match=f"{redis_server.host}:{redis_server.port}"):
        store.get("k")


CORRUPT_METADATA = [
    b"{not json",
    b"\xff\xfe\x00",  # not UTF-8
    b'{"stored": 1.0, "etag": null, "digest": "xxh3-64:00"}',  # no size
    b'{"size": "5", "stored": 1.0, "etag": null, "digest": "xxh3-64:00"}',
    b'{"size": -1, "stored": 1.0, "etag": null, "digest": "xxh3-64:00"}',
    b'{"size": 5, "stored": "yesterday", "etag": null, "digest": "xxh3-64:00"}',
    b'{"size": 5, "stored": 1.0, "etag": 7, "digest": "xxh3-64:00"}',
    b'{"size": 5, "stored": 1.0, "etag": null, "digest": "sha256:00"}',  # an older layout
    b"[1, 2]",
    b"null",
]


@pytest.mark.parametrize("meta", CORRUPT_METADATA)
def test_corrupt_metadata_is_a_corrupt_entry_never_a_raw_error(
    store: RedisStore, redis_server: RedisServer, meta: bytes
):
    store.put("k", b"value")
    raw_client(redis_server).hset(store.prefix + "k", "m", meta)
    for call in (store.get, store.stat, store.open_read):
        with pytest.raises(CorruptEntryError, match="metadata"):
            call("k")
    store.put("k", b"value")  # rewriting the entry heals it
    assert store.get("k") == b"value"


def test_a_missing_field_is_a_miss(store: RedisStore, redis_server: RedisServer):
    store.put("k", b"value")
    raw_client(redis_server).hdel(store.prefix + "k", "m")
    with pytest.raises(KeyError):
        store.get("k")


# -- outages: a dead or hung server fails fast with StoreError --------------------------------


def test_a_hung_server_raises_a_timeout_store_error_and_recovers(redis_control: RedisControl):
    server = redis_control.server
    with RedisStore(server.host, server.port, prefix=unique_prefix()) as store:
        store.put("k", b"v")
        redis_control.pause()
        try:
            for call in (lambda: store.get("k"), lambda: store.put("k", b"w"), store.clear):
                with pytest.raises(StoreError, match=r"Timeout.*|timed out") as caught:
                    call()
                assert f"{server.host}:{server.port}" in str(caught.value)
        finally:
            redis_control.resume()
        assert store.get("k") in (b"v", b"w")  # the paused server ran what it had received


def test_a_killed_server_raises_store_error_and_a_restarted_one_serves_again(
    redis_control: RedisControl,
):
    server = redis_control.server
    with RedisStore(server.host, server.port, prefix=unique_prefix()) as store:
        store.put("k", b"v")
        redis_control.kill()
        for call in (lambda: store.get("k"), lambda: "k" in store, lambda: store.put("k", b"w")):
            with pytest.raises(StoreError, match=f"{server.host}:{server.port}"):
                call()
        redis_control.restart()
        # The pooled connection died with the old server; the one retry reconnects.
        with pytest.raises(KeyError):
            store.get("k")
        store.put("k", b"w")
        assert store.get("k") == b"w"
