"""The otel plugin records a real cached store's work on OpenTelemetry's SDK, read back in memory.

The remote is moto's S3 server over HTTP (and the fault proxy in front of it, to make it fail);
the local store and the clock are the test's own, so freshness is decided, not timed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from cached_stores_factory import CachedStoreFactory, MemoryStore
from cached_stores_factory.caches.LRU_cache import LRUCache
from cached_stores_factory.caches.TTL_cache import TTLCache
from cached_stores_factory.errors import RemoteError
from cached_stores_factory.events import dispatcher
from cached_stores_factory.testing.faults import FaultProxy, reset
from cached_stores_factory.testing.policies import ManualClock
from cached_stores_factory.testing.servers import S3Server
from cached_stores_factory_otel import HIT_SAMPLE, OTelListener
from cached_stores_factory_s3 import S3Store

pytestmark = pytest.mark.s3
PLUGIN = Path(__file__).resolve().parents[1]
TIERS = {"csf.local.store": "MemoryStore", "csf.remote.store": "S3Store"}


class Telemetry:
    """An OTelListener on in-memory SDK providers, subscribed for one test."""

    def __init__(self, *, record_keys: bool = False) -> None:
        self.reader = InMemoryMetricReader()
        self.exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.listener = OTelListener(
            MeterProvider(metric_readers=[self.reader]), tracer_provider, record_keys
        )

    def points(self) -> dict[tuple[str, frozenset[tuple[str, Any]]], Any]:
        """Each metric's data points by (name, attributes): a sum's value, a histogram's count."""
        found: dict[tuple[str, frozenset[tuple[str, Any]]], Any] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        found[metric.name, frozenset(point.attributes.items())] = (
                            point.count if value is None else value
                        )
        return found

    def value(self, name: str, **attributes: Any) -> Any:
        return self.points().get((name, frozenset({**TIERS, **attributes}.items())))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    recorded = Telemetry()
    dispatcher.subscribe(recorded.listener)
    yield recorded
    dispatcher.unsubscribe(recorded.listener)


@pytest.fixture
def remote(s3_server: S3Server) -> Any:
    return s3_server.store(s3_server.new_bucket("otel"))


def test_hits_misses_bytes_and_latencies(telemetry: Telemetry, remote: Any) -> None:
    remote.put("k", b"x" * 100)
    cached = CachedStoreFactory(MemoryStore(), remote).build()
    for _ in range(1 + HIT_SAMPLE + 1):
        assert cached.get("k") == b"x" * 100  # a miss, then hits

    assert telemetry.value("csf.cache.misses") == 1
    assert telemetry.value("csf.cache.hits") == HIT_SAMPLE + 1
    assert telemetry.value("csf.cache.transferred", **{"csf.source": "remote"}) == 100
    local_bytes = telemetry.value("csf.cache.transferred", **{"csf.source": "local"})
    assert local_bytes == 100 * (HIT_SAMPLE + 1)
    # The histograms' counts: every miss; the first hit and the HIT_SAMPLE-th after it.
    assert telemetry.value("csf.cache.hit.duration") == 2
    assert telemetry.value("csf.cache.miss.duration") == 1
    [span] = telemetry.spans()
    assert span.name == "csf.miss"
    assert dict(span.attributes or {}) == {**TIERS, "csf.object.size": 100}  # never the key
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time >= span.start_time


def test_revalidations_are_counted_by_result(telemetry: Telemetry, remote: Any) -> None:
    remote.put("k", b"v1")
    clock = ManualClock()
    cached = CachedStoreFactory(MemoryStore(clock=clock), remote, TTLCache(60, clock=clock)).build()
    assert cached.get("k") == b"v1"
    clock.advance(61)
    assert cached.get("k") == b"v1"  # expired, and the remote answers 304: unchanged
    remote.put("k", b"v2")
    clock.advance(61)
    assert cached.get("k") == b"v2"  # expired, and the remote sends the new version

    for result in ("unchanged", "changed"):
        counted = telemetry.value("csf.cache.revalidations", **{"csf.revalidation.result": result})
        assert counted == 1, result
    revalidations = [s for s in telemetry.spans() if s.name == "csf.revalidate"]
    results = [(s.attributes or {})["csf.revalidation.result"] for s in revalidations]
    assert results == ["unchanged", "changed"]


def test_evictions_and_writes(telemetry: Telemetry, remote: Any) -> None:
    cached = CachedStoreFactory(MemoryStore(), remote, LRUCache(1)).build()
    cached.put("a", b"1")
    cached.put("b", b"22")  # a depth of one: a's copy goes
    assert telemetry.value("csf.cache.evictions") == 1
    writes = [s for s in telemetry.spans() if s.name == "csf.write"]
    assert [(s.attributes or {})["csf.object.size"] for s in writes] == [1, 2]


def test_a_failing_remote_is_an_error_and_an_outage_until_it_answers(
    telemetry: Telemetry, s3_server: S3Server, fault_proxy: FaultProxy
) -> None:
    bucket = s3_server.new_bucket("otel")
    s3_server.store(bucket).put("k", b"data")
    remote = S3Store(
        bucket,
        s3_region="eu-central-1",
        endpoint_url=fault_proxy.endpoint_url,  # the proxy in front of moto's server
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    cached = CachedStoreFactory(MemoryStore(), remote).build()
    fault_proxy.plan(reset(), times=100, method="GET")
    with pytest.raises(RemoteError):
        cached.get("k")
    down = {"csf.store.role": "remote", "csf.store.name": "S3Store"}
    assert telemetry.points()["csf.store.down", frozenset(down.items())] == 1
    assert telemetry.value("csf.remote.errors", **{"error.type": "RemoteError"}) == 1

    fault_proxy.clear()
    assert cached.get("k") == b"data"
    assert telemetry.points()["csf.store.down", frozenset(down.items())] == 0
    [miss] = [s for s in telemetry.spans() if s.name == "csf.miss"]
    assert miss.status.status_code is StatusCode.UNSET  # the read that worked


def test_keys_go_on_spans_only_when_asked(remote: Any) -> None:
    recorded = Telemetry(record_keys=True)
    dispatcher.subscribe(recorded.listener)
    try:
        remote.put("reports/q1", b"x")
        CachedStoreFactory(MemoryStore(), remote).build().get("reports/q1")
    finally:
        dispatcher.unsubscribe(recorded.listener)
    [span] = recorded.spans()
    assert (span.attributes or {})["csf.key"] == "reports/q1"


@pytest.mark.slow
def test_the_registry_starts_the_listener_when_a_config_is_read(tmp_path: Path) -> None:
    """Installed (with pip), the plugin is found through its entry point; no code subscribes
    it.  Anything else a config names is still found."""
    site = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(PLUGIN)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    code = (
        "from cached_stores_factory import CachedStoreFactory\n"
        "from cached_stores_factory.events import dispatcher\n"
        "CachedStoreFactory.from_config({'local': {'store': 'memory'},"
        " 'remote': {'store': 'tempfile', 'name': 'r', 'root': 'remote'}})\n"
        "print([repr(listener) for listener in dispatcher.listeners])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert out.stdout.strip() == "['OTelListener(record_keys=False)']"
