"""Prometheus metrics as OTLP: the conversion, and the OTEL_* settings that switch the export on."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from keventing.otlpmetrics import MetricsConfigError, from_env, to_otlp


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("event_count", "events", ["code"], registry=registry).labels("202").inc(3)
    Gauge("lag", "records", registry=registry).set(7)
    histogram = Histogram("latency", "ms", buckets=(1, 10), registry=registry)
    for value in (0.5, 5, 5, 50):
        histogram.observe(value)
    return registry


def test_counters_gauges_and_histograms_become_their_otlp_kinds() -> None:
    registry, now = _registry(), time.time() + 1
    metrics = {m.name: m for m in to_otlp(registry.collect(), now=now, started=now - 60)}
    counter = metrics["event_count"].sum
    assert counter.is_monotonic and counter.aggregation_temporality == 2
    [point] = counter.data_points
    assert point.as_double == 3 and point.attributes[0].key == "code"
    # The series' creation (prometheus-client's _created), not the exporter's start.
    assert (now - 60) * 1e9 < point.start_time_unix_nano <= point.time_unix_nano == int(now * 1e9)
    assert metrics["lag"].gauge.data_points[0].as_double == 7
    [bucketed] = metrics["latency"].histogram.data_points
    assert list(bucketed.explicit_bounds) == [1.0, 10.0]
    assert list(bucketed.bucket_counts) == [1, 2, 1]  # per bucket, not Prometheus' cumulative counts
    assert bucketed.count == 4 and bucketed.sum == 60.5


def test_export_is_off_unless_asked_for_and_bad_settings_are_named() -> None:
    assert from_env("svc", {}) is None
    assert from_env("svc", {"OTEL_METRICS_EXPORTER": "none"}) is None
    assert from_env("svc", {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}) is None
    exporter = from_env(
        "svc", {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}
    )
    assert (
        exporter is not None and exporter.endpoint == "http://c:4318/v1/metrics" and exporter.interval == 60
    )
    named = from_env(
        "svc",
        {
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m/x",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_SERVICE_NAME": "mine",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20t",
        },
    )
    assert named is not None and named.endpoint == "http://m/x" and named.interval == 0.5
    assert named.headers == {"authorization": "Bearer t"}
    assert {a.key: a.value.string_value for a in named.resource.attributes}["service.name"] == "mine"
    with pytest.raises(MetricsConfigError, match="prometheus"):
        from_env("svc", {"OTEL_METRICS_EXPORTER": "prometheus"})
    with pytest.raises(MetricsConfigError, match="http/protobuf"):
        from_env("svc", {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(MetricsConfigError, match="milliseconds"):
        from_env("svc", {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_METRIC_EXPORT_INTERVAL": "soon"})


def test_a_collector_that_is_away_is_reported_not_raised() -> None:
    from kev.kafka.embedded import free_port

    exporter = from_env(
        "svc",
        {
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1/metrics",
            "OTEL_METRIC_EXPORT_TIMEOUT": "1000",
        },
    )
    assert exporter is not None
    assert exporter.export() is False and exporter.exported == 0
