"""RedisLease against a real redis-server that is paused and cut: the key is never blocked for long.

The lease is only an efficiency device, so the promises are about liveness: an acquire
that Redis applies after its client gave up expires within the lease's short timeout, a
renewal that fails is retried (no second holder meanwhile), a lost lease is logged once,
and a lease dropped without release stops its renewal thread.  Waits are guarded by
timeouts, so a lease that blocks for good fails the test instead of hanging it.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import uuid

import pytest

from cached_stores_factory.errors import StoreError
from cached_stores_factory.testing.faults import RedisControl
from cached_stores_factory.testing.servers import RedisServer
from cached_stores_factory.testing.stores import take_lease
from cached_stores_factory_redis import RedisStore

pytestmark = pytest.mark.redis

KEY = "the/key"
GUARD_SECONDS = 20  # far above any bounded wait: reaching it means the lease blocks for good


def two_stores(server: RedisServer, **options: float) -> tuple[RedisStore, RedisStore]:
    """Two clients of one cache, as two processes would have."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    return (
        RedisStore(server.host, server.port, prefix=prefix, **options),  # type: ignore[arg-type]
        RedisStore(server.host, server.port, prefix=prefix),
    )


def test_an_acquire_cut_by_a_redis_pause_does_not_block_the_key_afterwards(
    redis_control: RedisControl,
):
    first, second = two_stores(redis_control.server)
    first.redis_client.ping()  # a pooled connection: the SET reaches the server's buffer
    redis_control.pause()
    try:
        with pytest.raises(StoreError, match="Timeout"), first.lease(KEY):
            pass
    finally:
        redis_control.resume()  # Redis now applies the SET its client gave up on
    assert take_lease(second, KEY) == "held"


def test_renewal_rides_over_a_redis_pause_shorter_than_the_lease(
    redis_control: RedisControl, caplog: pytest.LogCaptureFixture
):
    # Renewed every 1.5 s: a 2.5 s pause makes one renewal fail, while the lease has >= 3 s left.
    holder, rival = two_stores(redis_control.server, lease_timeout=4.5)
    with caplog.at_level(logging.DEBUG, logger="cached_stores_factory.redis"):
        with holder.lease(KEY):
            redis_control.pause()
            time.sleep(2.5)
            redis_control.resume()
            # The rival waits 5 s, past the lease's expiry had its renewal stopped.
            assert "still held elsewhere" in take_lease(rival, KEY)
        assert take_lease(rival, KEY) == "held"
    messages = [record.getMessage() for record in caplog.records]
    assert any("not renewed yet" in message for message in messages), messages
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_lost_lease_is_logged_once(redis_server: RedisServer, caplog: pytest.LogCaptureFixture):
    holder, _ = two_stores(redis_server)
    with caplog.at_level(logging.WARNING, logger="cached_stores_factory.redis"), holder.lease(KEY):
        redis_server.command("DEL", f"csf-lease:{holder.prefix}{KEY}")
        deadline = time.monotonic() + GUARD_SECONDS
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [record.getMessage() for record in caplog.records] == [
        f"Redis at {redis_server.host}:{redis_server.port} db 0: lease "
        f"'csf-lease:{holder.prefix}{KEY}' lost: it expired before it was renewed"
    ]


def test_a_lease_dropped_without_release_stops_renewing(redis_server: RedisServer):
    holder, rival = two_stores(redis_server)
    before = set(threading.enumerate())
    lease = holder.lease(KEY)
    lease.__enter__()
    (renewer,) = set(threading.enumerate()) - before
    del lease
    gc.collect()
    renewer.join(GUARD_SECONDS)
    assert not renewer.is_alive()
    assert take_lease(rival, KEY) == "held"  # it expired once nobody renewed it
