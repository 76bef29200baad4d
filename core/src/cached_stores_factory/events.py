"""Events: what the cached stores of this process do, for plugins that observe them.

A listener is a callable that takes one `Event`.  Plugins provide listeners through the
`csf_register_listeners` hook (the process-wide registry starts them when it first loads,
which reading a config does); code subscribes one with `dispatcher.subscribe(listener)`.

What runs where: an event is emitted after the fact, in the thread that did the work (a
reader's, a writer's, a background refresher's), with no lock held, and every listener runs
there before the call returns.  So a listener must be quick (add to a counter, end a span)
and hand anything slow to a thread of its own.  An exception it raises is logged once per
listener and otherwise ignored: observing never fails a read.

What it costs: the engine reads `dispatcher.listeners`, a tuple, before it makes an event.
While nobody listens that is the whole cost, one attribute check, on the hit path too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple

from ._log import lazy_logger

__all__ = ["KINDS", "Dispatcher", "Event", "Listener", "dispatcher"]

log = lazy_logger("cached_stores_factory")

KINDS = {
    "hit": "a fresh local copy was served; `size` its bytes, `seconds` the hit's time",
    "miss": "a read no fresh copy served, answered by this reader's fetch; `size` the bytes "
    "served, `seconds` the read's time",
    "coalesced": "a miss that waited for another reader's fetch; `size` and `seconds` as for "
    "a miss",
    "stale_served": "an expired copy was served (stale-while-revalidate, or stale-if-error "
    "with the remote's `error`)",
    "revalidated": "the remote confirmed an expired copy unchanged; `seconds` the round trip",
    "changed": "the remote sent a new version for an expired copy; `size` its bytes, "
    "`seconds` the round trip",
    "fetch": "an object was read from the remote; `size` its bytes",
    "write": "an object was written to the remote; `size` its bytes, `seconds` the write's time",
    "eviction": "the policy removed a local copy",
    "remote_error": "the remote failed a read; `error` says how",
    "store_down": "a store began failing (`role`: local or remote; `source` the store)",
    "store_up": "a failing store answers again (`role`, `source` as for store_down)",
}
"""Every event kind, and what its fields hold."""


class Event(NamedTuple):
    """One thing a cached store did.

    Attributes:
        kind: One of `KINDS`.
        source: The CachedStore it happened in; for `store_down` and `store_up`, the Store
            that failed or recovered.
        key: The key concerned; "" when none is (`store_down`, `store_up`).  Keys can be
            personal data: a listener that exports them should let its user opt in.
        size: The bytes concerned, when known.
        seconds: How long the work took, when it was timed.
        error: The exception, for `remote_error` and a `stale_served` because of one.
        role: "local" or "remote", for `store_down` and `store_up`.
    """

    kind: str
    source: object
    key: str = ""
    size: int | None = None
    seconds: float | None = None
    error: BaseException | None = None
    role: str = ""


Listener = Callable[[Event], object]


class Dispatcher:
    """The listeners of this process, and `emit`, which calls each one with an event.

    `listeners` is a tuple replaced whole on every change, so `emit` and the engine's check
    read it without a lock.
    """

    __slots__ = ("_failed", "_lock", "listeners")

    def __init__(self) -> None:
        self.listeners: tuple[Listener, ...] = ()
        self._failed: set[int] = set()  # ids of listeners whose failure was logged
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> None:
        """Call `listener` with every event from now on (once, however often subscribed)."""
        with self._lock:
            if listener not in self.listeners:
                self.listeners = (*self.listeners, listener)

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling `listener`; one that was not subscribed is ignored."""
        with self._lock:
            self.listeners = tuple(known for known in self.listeners if known != listener)

    def emit(self, event: Event) -> None:
        """Call every listener with `event`; one that raises is logged once, then ignored."""
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                if id(listener) not in self._failed:
                    self._failed.add(id(listener))
                    log.exception("the event listener %r failed; its errors are ignored", listener)


dispatcher = Dispatcher()
"""The process-wide dispatcher that the engine emits to."""
