"""RedisStore against a real redis-server: the conformance suite, TTLs, prefixes, errors."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from cached_stores_factory.errors import ConfigError, StoreError
from cached_stores_factory.plugins import registry
from cached_stores_factory.testing.servers import RedisServer, free_port, start_redis
from cached_stores_factory.testing.stores import StoreConformance
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


class TestRedisStoreConformance(StoreConformance):
    @pytest.fixture
    def store(self, redis_server: RedisServer) -> Iterator[RedisStore]:
        with RedisStore(redis_server.host, redis_server.port, prefix=unique_prefix()) as store:
            yield store
            store.clear()


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
    assert (connection["socket_connect_timeout"], connection["socket_timeout"]) == (2.0, 5.0)
    assert connection["health_check_interval"] == 30
    retry = connection["retry"]
    assert retry._retries == 3
    assert (retry._backoff._base, retry._backoff._cap) == (0.05, 1.0)
    assert {redis.ConnectionError, redis.TimeoutError} <= set(retry._supported_errors)


def test_keyword_arguments_override_the_pinned_settings():
    assert (
        RedisStore(socket_timeout=0.5)._client.connection_pool.connection_kwargs["socket_timeout"]
        == 0.5
    )


@pytest.mark.parametrize("ex", [0, -5])
def test_ex_must_be_positive(ex: float):
    with pytest.raises(ConfigError, match="ex must be a positive"):
        RedisStore(ex=ex)


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
