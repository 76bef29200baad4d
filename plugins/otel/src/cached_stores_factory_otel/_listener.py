"""OTelListener: the core's events as OpenTelemetry instruments and spans.

The listener runs in the thread that did the work, on the hit path too (see
`cached_stores_factory.events`), and a synchronous instrument of the SDK costs far more than
a hit.  So counts are added to totals in this process, under a lock, and the SDK reads them
through observable counters when it collects; the hit-latency histogram records one hit in
`HIT_SAMPLE`.  Misses, writes and revalidations, which wait on the remote anyway, are each
recorded and traced.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Status, StatusCode

from cached_stores_factory import __version__
from cached_stores_factory.events import Event

__all__ = ["HIT_SAMPLE", "OTelListener"]

SCOPE = "cached_stores_factory"
RECORD_KEYS = "CSF_OTEL_RECORD_KEYS"
"""Set to 1 to put each key on the spans (as `csf.key`) when the registry starts the listener."""
HIT_SAMPLE = 16
"""The hit-latency histogram records the first hit and every HIT_SAMPLE-th after it."""

# Span names by event kind: misses, writes and revalidations are timed, so each is a span.
SPANS = {
    "miss": "csf.miss",
    "coalesced": "csf.miss",
    "write": "csf.write",
    "revalidated": "csf.revalidate",
    "changed": "csf.revalidate",
}
# The observable counters: name, unit, description.
COUNTERS = (
    ("csf.cache.hits", "{hit}", "Reads served from a fresh local copy."),
    ("csf.cache.misses", "{miss}", "Reads no fresh local copy served, coalesced ones included."),
    ("csf.cache.coalesced", "{miss}", "Misses that waited for another reader's fetch."),
    (
        "csf.cache.revalidations",
        "{revalidation}",
        "Expired copies checked with the remote, by csf.revalidation.result.",
    ),
    ("csf.cache.stale_served", "{read}", "Expired copies served anyway."),
    ("csf.cache.evictions", "{entry}", "Local copies the policy removed."),
    ("csf.cache.transferred", "By", "Bytes read, by csf.source: remote or local."),
    ("csf.remote.errors", "{error}", "Reads the remote failed, by error.type."),
)

Tiers = tuple[str, str]
Extra = tuple[tuple[str, str], ...]


def _tiers(source: Any) -> Tiers:
    """The classes of a cached store's two tiers: what its instruments are labelled with."""
    return type(source.local).__name__, type(source.remote).__name__


def _attributes(tiers: Tiers, extra: Extra = ()) -> dict[str, Any]:
    return {"csf.local.store": tiers[0], "csf.remote.store": tiers[1], **dict(extra)}


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
        self._lock = threading.Lock()
        self._totals: dict[str, dict[tuple[Tiers, Extra], int]] = {n: {} for n, _, _ in COUNTERS}
        self._hits = 0
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        for name, unit, description in COUNTERS:
            meter.create_observable_counter(name, [self._observe(name)], unit, description)
        self.hit_duration = meter.create_histogram(
            "csf.cache.hit.duration", "s", f"How long a hit took: the first and 1 in {HIT_SAMPLE}."
        )
        self.miss_duration = meter.create_histogram(
            "csf.cache.miss.duration", "s", "How long a miss took, its fetch included."
        )
        self.down = meter.create_up_down_counter(
            "csf.store.down", "{store}", "Stores failing now, by csf.store.role and name."
        )
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        self._record: dict[str, Callable[[Event], None]] = {
            "hit": self._hit,
            "miss": self._miss,
            "coalesced": self._miss,
            "stale_served": lambda event: self._add("csf.cache.stale_served", event),
            "revalidated": self._revalidated,
            "changed": self._revalidated,
            "fetch": self._fetch,
            "eviction": lambda event: self._add("csf.cache.evictions", event),
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

    def _add(self, name: str, event: Event, amount: int = 1, extra: Extra = ()) -> None:
        key = (_tiers(event.source), extra)
        with self._lock:
            totals = self._totals[name]
            totals[key] = totals.get(key, 0) + amount

    def _observe(self, name: str) -> Callable[[CallbackOptions], Iterator[Observation]]:
        def observe(options: CallbackOptions) -> Iterator[Observation]:
            with self._lock:
                totals = list(self._totals[name].items())
            for (tiers, extra), total in totals:
                yield Observation(total, _attributes(tiers, extra))

        return observe

    def _hit(self, event: Event) -> None:
        self._add("csf.cache.hits", event)
        if event.size is not None:
            self._add("csf.cache.transferred", event, event.size, (("csf.source", "local"),))
        self._hits += 1  # a count lost to a race only moves which hit is sampled
        if event.seconds is not None and self._hits % HIT_SAMPLE == 1:
            self.hit_duration.record(event.seconds, _attributes(_tiers(event.source)))

    def _miss(self, event: Event) -> None:
        self._add("csf.cache.misses", event)
        if event.kind == "coalesced":
            self._add("csf.cache.coalesced", event)
        if event.seconds is not None:
            self.miss_duration.record(event.seconds, _attributes(_tiers(event.source)))

    def _revalidated(self, event: Event) -> None:
        result = "unchanged" if event.kind == "revalidated" else "changed"
        self._add("csf.cache.revalidations", event, extra=(("csf.revalidation.result", result),))

    def _fetch(self, event: Event) -> None:
        if event.size is not None:
            self._add("csf.cache.transferred", event, event.size, (("csf.source", "remote"),))

    def _remote_error(self, event: Event) -> None:
        kind = type(event.error).__name__ if event.error is not None else "unknown"
        self._add("csf.remote.errors", event, extra=(("error.type", kind),))

    def _store_changed(self, event: Event) -> None:
        attributes = {"csf.store.role": event.role, "csf.store.name": type(event.source).__name__}
        self.down.add(1 if event.kind == "store_down" else -1, attributes)

    def _span(self, event: Event) -> None:
        """A span of the work the event reports, ended now and begun `seconds` ago."""
        assert event.seconds is not None
        end = time.time_ns()
        attributes = _attributes(_tiers(event.source))
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
