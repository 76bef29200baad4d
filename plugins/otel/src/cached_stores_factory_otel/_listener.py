"""OTelListener: the core's events as OpenTelemetry instruments and spans."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from cached_stores_factory import __version__
from cached_stores_factory.events import Event

__all__ = ["OTelListener"]

SCOPE = "cached_stores_factory"
RECORD_KEYS = "CSF_OTEL_RECORD_KEYS"
"""Set to 1 to put each key on the spans (as `csf.key`) when the registry starts the listener."""

# Span names by event kind: misses, writes and revalidations are timed, so each is a span.
SPANS = {
    "miss": "csf.miss",
    "coalesced": "csf.miss",
    "write": "csf.write",
    "revalidated": "csf.revalidate",
    "changed": "csf.revalidate",
}


def _names(source: Any) -> dict[str, str]:
    """The attributes naming a cached store's tiers: their classes, never their settings."""
    return {
        "csf.local.store": type(source.local).__name__,
        "csf.remote.store": type(source.remote).__name__,
    }


class OTelListener:
    """Records every event of the cached stores on OpenTelemetry instruments and spans.

    Through `opentelemetry-api` only: with no SDK configured, the global providers are no-ops
    and recording costs next to nothing.  The instruments are listed in the operations guide.

    Args:
        meter_provider: Where the instruments are made; None uses the global provider.
        tracer_provider: Where the spans go; None uses the global provider.
        record_keys: Put each key on its span as `csf.key`.  Off by default, since keys can
            be personal data; None reads the environment variable CSF_OTEL_RECORD_KEYS (1).
    """

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        record_keys: bool | None = None,
    ) -> None:
        if record_keys is None:
            record_keys = os.environ.get(RECORD_KEYS, "") == "1"
        self.record_keys = record_keys
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        counter, histogram = meter.create_counter, meter.create_histogram
        self.hits = counter("csf.cache.hits", "{hit}", "Reads served from a fresh local copy.")
        self.misses = counter(
            "csf.cache.misses", "{miss}", "Reads no fresh local copy served, coalesced included."
        )
        self.coalesced = counter(
            "csf.cache.coalesced", "{miss}", "Misses that waited for another reader's fetch."
        )
        self.revalidations = counter(
            "csf.cache.revalidations",
            "{revalidation}",
            "Expired copies checked with the remote, by csf.revalidation.result.",
        )
        self.stale_served = counter(
            "csf.cache.stale_served", "{read}", "Expired copies served anyway."
        )
        self.evictions = counter(
            "csf.cache.evictions", "{entry}", "Local copies the policy removed."
        )
        self.transferred = counter(
            "csf.cache.transferred", "By", "Bytes read, by csf.source: remote or local."
        )
        self.remote_errors = counter(
            "csf.remote.errors", "{error}", "Reads the remote failed, by error.type."
        )
        self.hit_duration = histogram("csf.cache.hit.duration", "s", "How long a hit took.")
        self.miss_duration = histogram("csf.cache.miss.duration", "s", "How long a miss took.")
        self.down = meter.create_up_down_counter(
            "csf.store.down", "{store}", "Stores failing now, by csf.store.role and name."
        )
        self._record: dict[str, Callable[[Event], None]] = {
            "hit": self._hit,
            "miss": self._miss,
            "coalesced": self._miss,
            "stale_served": self._stale_served,
            "revalidated": self._revalidated,
            "changed": self._revalidated,
            "fetch": self._fetch,
            "eviction": self._eviction,
            "remote_error": self._remote_error,
            "store_down": self._store_changed,
            "store_up": self._store_changed,
        }

    def __repr__(self) -> str:
        return f"OTelListener(record_keys={self.record_keys!r})"

    def __call__(self, event: Event) -> None:
        record = self._record.get(event.kind)
        if record is not None:
            record(event)
        if event.kind in SPANS and event.seconds is not None:
            self._span(event)

    def _hit(self, event: Event) -> None:
        names = _names(event.source)
        self.hits.add(1, names)
        if event.size is not None:
            self.transferred.add(event.size, {**names, "csf.source": "local"})
        if event.seconds is not None:
            self.hit_duration.record(event.seconds, names)

    def _miss(self, event: Event) -> None:
        names = _names(event.source)
        self.misses.add(1, names)
        if event.kind == "coalesced":
            self.coalesced.add(1, names)
        if event.seconds is not None:
            self.miss_duration.record(event.seconds, names)

    def _stale_served(self, event: Event) -> None:
        self.stale_served.add(1, _names(event.source))

    def _revalidated(self, event: Event) -> None:
        result = "unchanged" if event.kind == "revalidated" else "changed"
        self.revalidations.add(1, {**_names(event.source), "csf.revalidation.result": result})

    def _fetch(self, event: Event) -> None:
        if event.size is not None:
            self.transferred.add(event.size, {**_names(event.source), "csf.source": "remote"})

    def _eviction(self, event: Event) -> None:
        self.evictions.add(1, _names(event.source))

    def _remote_error(self, event: Event) -> None:
        kind = type(event.error).__name__ if event.error is not None else "unknown"
        self.remote_errors.add(1, {**_names(event.source), "error.type": kind})

    def _store_changed(self, event: Event) -> None:
        attributes = {"csf.store.role": event.role, "csf.store.name": type(event.source).__name__}
        self.down.add(1 if event.kind == "store_down" else -1, attributes)

    def _span(self, event: Event) -> None:
        """A span of the work the event reports, ended now and begun `seconds` ago."""
        assert event.seconds is not None
        end = time.time_ns()
        attributes: dict[str, Any] = _names(event.source)
        if event.size is not None:
            attributes["csf.object.size"] = event.size
        if event.kind in ("revalidated", "changed"):
            attributes["csf.revalidation.result"] = (
                "unchanged" if event.kind == "revalidated" else "changed"
            )
        if event.kind == "coalesced":
            attributes["csf.coalesced"] = True
        if self.record_keys:
            attributes["csf.key"] = event.key
        span = self._tracer.start_span(
            SPANS[event.kind],
            kind=trace.SpanKind.INTERNAL,
            attributes=attributes,
            start_time=end - int(event.seconds * 1e9),
        )
        if event.error is not None:
            span.record_exception(event.error)
            span.set_status(Status(StatusCode.ERROR, type(event.error).__name__))
        span.end(end_time=end)
