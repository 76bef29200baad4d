"""RedisLease: a per-key lease on a Redis server, held by one process of a fleet at a time.

It is redis-py's `Lock` (SET NX PX with a random token; release and renewal are Lua scripts
that check the token), held for the length of a `with` block.  While it is held a thread
renews it every third of the timeout, so a long fetch keeps it; a holder that dies stops
renewing and the lease expires within `timeout` seconds.  Waiters poll every POLL_SECONDS.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from cached_stores_factory.errors import StoreError

__all__ = ["DEFAULT_LEASE_SECONDS", "POLL_SECONDS", "RedisLease"]

log = logging.getLogger("cached_stores_factory.redis")

DEFAULT_LEASE_SECONDS = 30.0
POLL_SECONDS = 0.05


class RedisLease:
    """Hold `name` on `client` while the block runs; errors become StoreError naming `where`."""

    def __init__(self, client: Any, name: str, *, timeout: float, where: str) -> None:
        self._client = client
        self._name = name
        self._timeout = timeout
        self._where = where
        self._lock: Any = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> RedisLease:
        import redis

        self._lock = self._client.lock(
            self._name, timeout=self._timeout, sleep=POLL_SECONDS, thread_local=False
        )
        try:
            self._lock.acquire(blocking=True)
        except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise StoreError(f"{self._where}: lease {self._name!r}: {type(exc).__name__}") from None
        self._renewer = threading.Thread(target=self._renew, name="csf-lease", daemon=True)
        self._renewer.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self._timeout / 3):
            try:
                self._lock.reacquire()
            except Exception as exc:  # lost or unreachable: the holder finds out at release
                log.warning("%s: lease %r not renewed: %s", self._where, self._name, exc)
                return

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        try:
            self._lock.release()
        except Exception as exc:  # expired and maybe taken: nothing of ours left to free
            log.warning("%s: lease %r lost before release: %s", self._where, self._name, exc)
