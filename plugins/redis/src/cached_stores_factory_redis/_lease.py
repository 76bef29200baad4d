"""RedisLease: a per-key lease on a Redis server, held by one process of a fleet at a time.

It is redis-py's `Lock` (SET NX PX with a random token; renewal and release are Lua scripts
that check the token), held for the length of a `with` block.  The lease is an efficiency
device (one fetch per cold key across processes), never what keeps data correct, so it is
built to never block a key for long when nobody holds it:

- it expires `timeout` seconds (default 1.5) after its last renewal, and its holder renews
  it every third of that from a daemon thread, so a holder that died or is stopped frees the
  key within `timeout`;
- a renewal that fails (Redis paused, a connection cut) is retried every POLL_SECONDS until
  the lease is released or found expired; the loss is logged once;
- an acquire that fails midway (a timeout: its SET may still be applied when Redis answers
  again) leaves a lease nobody holds, which expires within `timeout`.  No delete is tried:
  Redis may apply it before that SET, and it would make every acquire during an outage
  wait for one more timeout;
- a waiter gives up after WAIT_SECONDS with StoreError: the engine then goes on without;
- a forked child never renews or releases its parent's lease (the owner's pid is checked).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from types import TracebackType
from typing import Any

from cached_stores_factory.errors import StoreError

__all__ = ["DEFAULT_LEASE_SECONDS", "POLL_SECONDS", "WAIT_SECONDS", "RedisLease"]

log = logging.getLogger("cached_stores_factory.redis")

DEFAULT_LEASE_SECONDS = 1.5
POLL_SECONDS = 0.05
WAIT_SECONDS = 5.0
"""How long `with lease` waits for another holder before it raises StoreError."""


class RedisLease:
    """Hold `name` on `client` while the block runs; errors become StoreError naming `where`."""

    def __init__(
        self, client: Any, name: str, *, timeout: float, where: str, wait: float = WAIT_SECONDS
    ) -> None:
        self._lock = client.lock(
            name,
            timeout=timeout,
            sleep=POLL_SECONDS,
            blocking_timeout=wait,
            thread_local=False,  # the renewal thread renews the token the holder took
        )
        self._where = where
        self._wait = wait
        self._owner = 0  # the pid that entered the block
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._lost = False

    def _describe(self) -> str:
        return f"{self._where}: lease {self._lock.name!r}"

    def __enter__(self) -> RedisLease:
        import redis

        try:
            acquired = self._lock.acquire()
        except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise StoreError(f"{self._describe()}: {type(exc).__name__}") from None
        if not acquired:
            raise StoreError(f"{self._describe()}: still held elsewhere after {self._wait} s")
        self._owner = os.getpid()
        self._renewer = threading.Thread(
            target=_renew,
            args=(weakref.ref(self), self._stop, self._lock.timeout / 3),
            name="csf-lease",
            daemon=True,
        )
        self._renewer.start()
        return self

    def _renew_once(self, interval: float) -> float | None:
        """Push the lease's expiry back: the wait before the next try, or None once it is lost."""
        import redis

        try:
            self._lock.reacquire()
        except redis.exceptions.LockNotOwnedError:
            self._lost = True
            log.warning("%s lost: it expired before it was renewed", self._describe())
            return None
        except Exception as exc:  # Redis unreachable for now: try again soon
            log.debug("%s not renewed yet: %s", self._describe(), exc)
            return POLL_SECONDS
        return interval

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if os.getpid() != self._owner:  # a forked child: the lease is its parent's
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        try:
            self._lock.release()
        except Exception as exc:  # expired (and maybe taken), or Redis away: it expires
            if not self._lost:
                log.warning("%s not released: %s", self._describe(), exc)


def _renew(lease: weakref.ref[RedisLease], stop: threading.Event, interval: float) -> None:
    """The renewal thread: it holds the lease weakly, so a lease dropped unreleased stops it."""
    wait: float | None = interval
    while wait is not None and not stop.wait(wait):
        holder = lease()
        if holder is None:
            return
        wait = holder._renew_once(interval)
        del holder
