"""What keeps a cached store useful while a store fails: outage tracking and background refresh."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._log import lazy_logger
from .errors import ObjectArchivedError
from .events import Event
from .events import dispatcher as _events

if TYPE_CHECKING:
    import queue

__all__ = ["Outage", "Refresher"]

log = lazy_logger("cached_stores_factory")

_STOP = ""  # no key is empty: tells a refresh worker its store closed

BACKOFF_FIRST = 1.0
"""Seconds the engine skips a local store after it first fails; doubled per failed retry."""
BACKOFF_MAX = 30.0
"""The longest a failing local store is skipped before it is tried again."""


class Outage:
    """Whether a store is failing: logged once per outage, and skipped for a back-off period.

    `until` is read without the lock on every hit: 0.0 while the store is healthy, so the
    hit path pays one attribute test.
    """

    def __init__(self, role: str, store: object, clock: Callable[[], float] = time.monotonic):
        self._role = role
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._backoff = BACKOFF_FIRST
        self.until = 0.0  # the monotonic time before which the store is skipped; 0.0: healthy

    def failed(self, error: BaseException) -> None:
        """The store failed: log it if this starts an outage, and skip it for a while.

        An archived object is no failure of the store: the store answered, so it ends an
        outage instead of starting one.
        """
        if isinstance(error, ObjectArchivedError):
            self.answered()
            return
        with self._lock:
            if not self.until:
                log.warning(
                    "the %s store %r failed (%s); %s",
                    self._role,
                    self._store,
                    error,
                    "reads and writes go to the remote until it answers again"
                    if self._role == "local"
                    else "each later call tries it again",
                )
                if _events.listeners:
                    _events.emit(Event("store_down", self._store, error=error, role=self._role))
            else:
                self._backoff = min(self._backoff * 2, BACKOFF_MAX)
            self.until = self._clock() + self._backoff

    def skipping(self) -> bool:
        """True while the back-off after a failure lasts."""
        until = self.until
        return bool(until) and self._clock() < until

    def answered(self) -> None:
        """The store answered: an outage, if there was one, is over."""
        if not self.until:
            return
        with self._lock:
            if self.until:
                log.warning("the %s store %r answers again", self._role, self._store)
                if _events.listeners:
                    _events.emit(Event("store_up", self._store, role=self._role))
                self.until = 0.0
                self._backoff = BACKOFF_FIRST


class Refresher:
    """A few daemon threads that refresh entries served stale, each key queued once.

    Daemon threads, so nothing waits for a refresh at exit; idle ones end after a few
    seconds, so a dropped cached store is not kept alive by them.  In a forked child the
    queue starts empty.  The queue is made by the first refresh: most cached stores never
    serve stale entries, and a cold start need not import `queue`.
    """

    WORKERS = 2
    QUEUED = 256
    IDLE_SECONDS = 5.0

    def __init__(self, refresh: Callable[[str], None]) -> None:
        self._refresh = weakref.WeakMethod(refresh)
        self._lock = threading.Lock()
        self._reset()

    def close(self) -> None:
        """Take no more keys, drop the queued ones, and let every worker end now."""
        with self._lock:
            self._closed = True
            if self._queue is not None:
                self._pending.clear()
                while not self._queue.empty():
                    self._queue.get_nowait()
                for _ in range(self._workers):
                    self._queue.put_nowait(_STOP)

    def _reset(self) -> None:
        self._closed = False
        self._pid = os.getpid()
        self._queue: queue.Queue[str] | None = None
        self._pending: set[str] = set()
        self._workers = 0

    def submit(self, key: str) -> None:
        """Refresh `key` soon, unless it is queued already or the queue is full."""
        import queue

        with self._lock:
            if self._pid != os.getpid():
                self._reset()
            if self._closed or key in self._pending:
                return
            if self._queue is None:
                self._queue = queue.Queue(self.QUEUED)
            try:
                self._queue.put_nowait(key)
            except queue.Full:
                return
            self._pending.add(key)
            if self._workers < self.WORKERS:
                self._workers += 1
                worker = threading.Thread(
                    target=self._work, args=(self._queue,), name="csf-refresh", daemon=True
                )
                worker.start()

    def _work(self, keys: queue.Queue[str]) -> None:
        import queue

        while True:
            try:
                key = keys.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if keys.empty():
                        self._workers -= 1
                        return
                continue
            if key is _STOP:
                with self._lock:
                    self._workers -= 1
                return
            try:
                refresh = self._refresh()
                if refresh is not None:
                    refresh(key)
            except Exception:
                log.warning("refreshing %r in the background failed", key, exc_info=True)
            finally:
                with self._lock:
                    self._pending.discard(key)
