"""OTLP metrics export on the real stack: every service pushes its Prometheus metrics to a real OTLP/HTTP
receiver, and the numbers are the ones /metrics serves."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Kev, RecordingSink
from helpers import broker_doc, trigger_doc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from otlp import OtlpHttpReceiver

from kev.stack import Stack


class MetricsReceiver(OtlpHttpReceiver):
    """An OTLP/HTTP metrics receiver on loopback: keeps the latest request of every service instance."""

    PATH = "/v1/metrics"
    REQUEST = ExportMetricsServiceRequest
    RESPONSE = ExportMetricsServiceResponse

    def __init__(self) -> None:
        super().__init__()
        self.latest: dict[tuple[str, str], ExportMetricsServiceRequest] = {}

    def record(self, request: ExportMetricsServiceRequest) -> None:
        for resource_metrics in request.resource_metrics:
            attributes = {a.key: a.value.string_value for a in resource_metrics.resource.attributes}
            key = (attributes.get("service.name", ""), attributes.get("service.instance.id", ""))
            with self.lock:
                self.latest[key] = request

    def metric(self, service: str, name: str) -> Any:
        with self.lock:
            requests = [r for (s, _), r in self.latest.items() if s == service]
        for request in requests:
            for resource_metrics in request.resource_metrics:
                for scope in resource_metrics.scope_metrics:
                    for metric in scope.metrics:
                        if metric.name == name:
                            return metric
        return None


@pytest.fixture(scope="module")
def collector() -> Iterator[MetricsReceiver]:
    receiver = MetricsReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def exporting_kev(
    kafka: str, collector: MetricsReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kev]:
    stack = Stack.on_free_ports(
        kafka,
        tmp_path_factory.mktemp("otlp-metrics-logs"),
        "otlpm",
        extra_env={
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": collector.endpoint,
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        },
    )
    stack.start_all(("controller", "receiver", "dispatcher"))
    try:
        stack.wait_ready(timeout=90)
        yield Kev(stack)
    finally:
        stack.stop_all()


def _points(metric: Any) -> list[Any]:
    kind = metric.WhichOneof("data")
    return list(getattr(metric, kind).data_points)


def _attrs(point: Any) -> dict[str, str]:
    return {a.key: a.value.string_value for a in point.attributes}


def _wait(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("not exported in time")


def test_every_service_exports_its_metrics_over_otlp(
    exporting_kev: Kev, collector: MetricsReceiver, sink: RecordingSink, ns: str, tmp_path: Path
) -> None:
    kev = exporting_kev
    path = f"{ns}/otlp"
    kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", sink.url(path)))
    kev.wait_ready("Trigger", "t", ns)
    for i in range(3):
        assert kev.send(ns, "default", f"m-{i}").status_code == 202
    sink.wait_for(path, 3)

    def accepted() -> float:
        metric = collector.metric("keventing-receiver", "event_count")
        if metric is None:
            return 0
        return sum(
            p.as_double
            for p in _points(metric)
            if _attrs(p).get("namespace_name") == ns and _attrs(p).get("response_code") == "202"
        )

    assert _wait(lambda: accepted() >= 3)
    counter = collector.metric("keventing-receiver", "event_count")
    assert counter.sum.is_monotonic and counter.sum.aggregation_temporality == 2  # cumulative
    point = next(p for p in _points(counter) if _attrs(p).get("namespace_name") == ns)
    assert 0 < point.start_time_unix_nano <= point.time_unix_nano

    def delivered() -> Any:
        metric = collector.metric("keventing-dispatcher", "event_dispatch_latencies")
        if metric is None:
            return None
        points = [p for p in _points(metric) if _attrs(p).get("namespace_name") == ns and p.count >= 3]
        return points[0] if points else None

    histogram = _wait(delivered)
    assert sum(histogram.bucket_counts) == histogram.count and histogram.sum > 0
    assert len(histogram.bucket_counts) == len(histogram.explicit_bounds) + 1
    # The controller exports too, and the resource says who and where.
    assert _wait(lambda: collector.metric("keventing-controller", "keventing_controller_reconcile"))
    with collector.lock:
        services = {service for service, _ in collector.latest}
        request = next(r for (s, _), r in collector.latest.items() if s == "keventing-receiver")
    assert {"keventing-receiver", "keventing-dispatcher", "keventing-controller"} <= services
    resource = {a.key: a.value.string_value for a in request.resource_metrics[0].resource.attributes}
    assert resource["deployment.environment"] == "test" and resource["service.instance.id"]
