"""RedisStore's fences: the contract on one server and on a cluster, across processes, and
across a restart that forgets every fence."""

from __future__ import annotations

import io
import uuid

import pytest
import redis
import redis.crc
from hypothesis import given
from hypothesis import strategies as st

from cached_stores_factory.errors import StoreError
from cached_stores_factory.testing.faults import RedisControl
from cached_stores_factory.testing.servers import RedisServer
from cached_stores_factory.testing.stores import keys_strategy
from cached_stores_factory_redis import RedisStore
from cached_stores_factory_redis._store import _slot_tag

pytestmark = pytest.mark.redis


def unique_prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


def test_every_slot_has_a_hash_tag_without_a_closing_brace():
    for slot in range(16384):
        tag = _slot_tag(slot)
        assert b"}" not in tag
        assert redis.crc.key_slot(b"any{" + tag + b"}thing") == slot


@given(prefix=st.sampled_from(["csf:", "{app}:", "a{", "}b{", "{}", ""]), key=keys_strategy)
def test_a_fence_shares_its_entry_s_slot_whatever_braces_the_name_holds(prefix: str, key: str):
    assert_one_slot(prefix, key)


@given(key=st.text("{}ab", min_size=1, max_size=8).filter(lambda k: "/" not in k))
def test_a_fence_shares_its_entry_s_slot_for_keys_made_of_braces(key: str):
    assert_one_slot("csf:", key)


def assert_one_slot(prefix: str, key: str) -> None:
    """The keys a fence script touches share the entry's slot (on a cluster, its epoch too)."""
    store = RedisStore.__new__(RedisStore)  # naming needs no connection
    store._prefix = prefix.encode()
    store.cluster = True
    fence, entry, epoch = store._fence_keys(key)
    assert entry == store._name(key)
    assert fence == store._fence_name(key)
    assert {redis.crc.key_slot(name) for name in (fence, entry, epoch)} == {
        redis.crc.key_slot(entry)
    }


def test_a_fenced_store_keeps_the_store_s_expiry(redis_server: RedisServer):
    with RedisStore(redis_server.host, redis_server.port, ex=60, prefix=unique_prefix()) as store:
        token = store.fence("k")
        assert store.put_fenced("k", io.BytesIO(b"v"), etag="e", fence=token or "") is not None
        ttl = store.redis_client.pttl(store._name("k"))
        assert 50_000 < ttl <= 60_000
        fence_ttl = store.redis_client.pttl(store._fence_name("k"))
        assert 23 * 3600_000 < fence_ttl <= 24 * 3600_000  # a fence is never kept forever
        assert store.stat("k").etag == "e"
        store.clear()


def test_a_change_mark_expires_with_its_hold(redis_server: RedisServer):
    with RedisStore(redis_server.host, redis_server.port, prefix=unique_prefix()) as store:
        store.begin_change("k", hold=30)
        assert 20_000 < store.redis_client.pttl(store._fence_name("k")) <= 30_000


def test_a_server_restarted_empty_refuses_every_token_handed_out_before(
    redis_control: RedisControl,
):
    server = redis_control.server
    with RedisStore(server.host, server.port, prefix=unique_prefix()) as store:
        token = store.fence("k")
        assert token is not None
        redis_control.restart()
        assert store.put_fenced("k", io.BytesIO(b"old"), etag=None, fence=token) is None
        assert "k" not in store
        after = store.fence("k")
        assert after not in (None, token)
        assert store.put_fenced("k", io.BytesIO(b"new"), etag=None, fence=after or "") is not None
        assert store.get("k") == b"new"


def test_a_change_the_server_cannot_take_raises_before_the_remote_changes(
    redis_control: RedisControl,
):
    """begin_change raises StoreError, so the engine refuses the write."""
    server = redis_control.server
    with RedisStore(server.host, server.port, prefix=unique_prefix()) as store:
        redis_control.kill()
        with pytest.raises(StoreError, match=f"{server.host}:{server.port}"):
            store.begin_change("k", hold=60)
        with pytest.raises(StoreError):
            store.fence("k")


def test_a_fence_an_older_version_left_is_read_with_an_epoch_made_now(
    redis_server: RedisServer,
):
    """Before clear epochs a fence was the hash alone: it is read, and no copy is lost."""
    with RedisStore(redis_server.host, redis_server.port, prefix=unique_prefix()) as store:
        fence, _entry, epoch = store._fence_keys("k")
        store.redis_client.hset(fence, mapping={"t": "old", "n": 0})
        assert store.redis_client.exists(epoch) == 0
        token = store.fence("k")
        assert token is not None and token.startswith("old/")
        assert store.put_fenced("k", io.BytesIO(b"v"), etag=None, fence=token) is not None
        assert store.put_fenced("k", io.BytesIO(b"v"), etag=None, fence="old") is None
        store.clear()
