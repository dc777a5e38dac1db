"""Optional OTLP metrics export: a service's Prometheus metrics pushed to an OpenTelemetry collector.

Off unless ``OTEL_METRICS_EXPORTER=otlp`` (the OpenTelemetry variable; ``none`` or unset: off). Then, every
``OTEL_METRIC_EXPORT_INTERVAL`` milliseconds (60000 by default, as the SDK's) and once more at exit, a
background thread reads the same registry ``/metrics`` serves and sends it as one OTLP/HTTP protobuf request
to ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/metrics``), with
``OTEL_EXPORTER_OTLP_HEADERS`` and within ``OTEL_METRIC_EXPORT_TIMEOUT`` ms. Being a reading of the
Prometheus registry, the two views never disagree and nothing on the hot paths changes: counters become
cumulative monotonic sums (their start time from ``_created``), gauges gauges, histograms explicit-bucket
histograms. The resource names the service (``OTEL_SERVICE_NAME`` or the service's own name), its process
(``service.instance.id``: a receiver with several workers exports each worker's series) and
``OTEL_RESOURCE_ATTRIBUTES``.

A collector that is away is logged (once per outage) and tried again at the next interval; export never
blocks or fails the service.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric

log = logging.getLogger("keventing.metrics")

CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


class MetricsConfigError(ValueError):
    """The OTEL_* variables ask for a metrics export keventing cannot do; the message says what to set."""


def _attributes(labels: Mapping[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in sorted(labels.items())]


def _nanos(seconds: float) -> int:
    return int(seconds * 1e9)


def to_otlp(families: Iterable[Metric], now: float, started: float) -> list[metrics_pb2.Metric]:
    """Prometheus metric families as OTLP metrics (cumulative from ``started``, or each series' creation)."""
    out = []
    for family in families:
        metric = metrics_pb2.Metric(
            name=family.name, description=family.documentation, unit=family.unit or ""
        )
        if family.type == "counter":
            created = {
                tuple(sorted(s.labels.items())): s.value
                for s in family.samples
                if s.name.endswith("_created")
            }
            points = [
                metrics_pb2.NumberDataPoint(
                    attributes=_attributes(s.labels),
                    start_time_unix_nano=_nanos(created.get(tuple(sorted(s.labels.items())), started)),
                    time_unix_nano=_nanos(now),
                    as_double=s.value,
                )
                for s in family.samples
                if s.name.endswith("_total")
            ]
            metric.sum.CopyFrom(
                metrics_pb2.Sum(data_points=points, aggregation_temporality=CUMULATIVE, is_monotonic=True)
            )
        elif family.type == "gauge":
            metric.gauge.CopyFrom(
                metrics_pb2.Gauge(
                    data_points=[
                        metrics_pb2.NumberDataPoint(
                            attributes=_attributes(s.labels), time_unix_nano=_nanos(now), as_double=s.value
                        )
                        for s in family.samples
                    ]
                )
            )
        elif family.type == "histogram":
            metric.histogram.CopyFrom(
                metrics_pb2.Histogram(
                    data_points=_histogram_points(family, now, started), aggregation_temporality=CUMULATIVE
                )
            )
        else:  # summaries, info and state sets: nothing of keventing's own; Prometheus still serves them
            continue
        out.append(metric)
    return out


def _histogram_points(family: Metric, now: float, started: float) -> list[metrics_pb2.HistogramDataPoint]:
    series: dict[tuple[tuple[str, str], ...], dict[str, object]] = {}
    for sample in family.samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        entry = series.setdefault(tuple(sorted(labels.items())), {"labels": labels, "buckets": []})
        if sample.name.endswith("_bucket"):
            entry["buckets"].append((float(sample.labels["le"]), sample.value))  # type: ignore[attr-defined]
        elif sample.name.endswith("_count"):
            entry["count"] = sample.value
        elif sample.name.endswith("_sum"):
            entry["sum"] = sample.value
        elif sample.name.endswith("_created"):
            entry["created"] = sample.value
    points = []
    for entry in series.values():
        cumulative = sorted(entry["buckets"])  # type: ignore[call-overload]
        bounds = [le for le, _ in cumulative if le != float("inf")]
        counts, previous = [], 0.0
        for _, value in cumulative:
            counts.append(int(value - previous))
            previous = value
        points.append(
            metrics_pb2.HistogramDataPoint(
                attributes=_attributes(entry["labels"]),  # type: ignore[arg-type]
                start_time_unix_nano=_nanos(float(entry.get("created", started))),  # type: ignore[arg-type]
                time_unix_nano=_nanos(now),
                count=int(entry.get("count", previous)),  # type: ignore[call-overload]
                sum=float(entry.get("sum", 0.0)),  # type: ignore[arg-type]
                explicit_bounds=bounds,
                bucket_counts=counts,
            )
        )
    return points


class OtlpMetricsExporter:
    """Pushes ``registry`` to ``endpoint`` every ``interval`` seconds from a daemon thread."""

    def __init__(
        self,
        endpoint: str,
        service_name: str,
        interval: float = 60.0,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        resource_attributes: Mapping[str, str] | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.endpoint = endpoint
        self.interval = interval
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.registry = registry
        self.started = time.time()
        attributes = {
            **(resource_attributes or {}),
            "service.name": service_name,
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
        }
        self.resource = Resource(attributes=_attributes(attributes))
        self.exported = 0  # requests the collector accepted
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp-metrics", daemon=True)

    def request(self) -> ExportMetricsServiceRequest:
        metrics = to_otlp(self.registry.collect(), time.time(), self.started)
        scope = metrics_pb2.ScopeMetrics(scope=InstrumentationScope(name="keventing"), metrics=metrics)
        return ExportMetricsServiceRequest(
            resource_metrics=[metrics_pb2.ResourceMetrics(resource=self.resource, scope_metrics=[scope])]
        )

    def export(self) -> bool:
        body = self.request().SerializeToString()
        request = urllib.request.Request(
            self.endpoint,
            data=body,
            method="POST",
            headers={**self.headers, "content-type": "application/x-protobuf"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except (OSError, urllib.error.URLError) as err:
            if not self._failing:
                log.warning(
                    "OTLP metrics export failed", extra={"endpoint": self.endpoint, "error": str(err)}
                )
            self._failing = True
            return False
        if self._failing:
            log.info("OTLP metrics export works again", extra={"endpoint": self.endpoint})
        self._failing = False
        self.exported += 1
        return True

    def start(self) -> OtlpMetricsExporter:
        self._thread.start()
        atexit.register(self.shutdown)
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.export()

    def shutdown(self) -> None:
        """Stop the thread and send what was counted since the last export."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.export()


def _headers(value: str) -> dict[str, str]:
    out = {}
    for part in value.split(","):
        name, sep, text = part.partition("=")
        if sep and name.strip():
            out[name.strip()] = urllib.parse.unquote(text.strip())
    return out


def from_env(service_name: str, environ: Mapping[str, str] | None = None) -> OtlpMetricsExporter | None:
    """The exporter the OTEL_* variables ask for (not started), or None when metrics export is off."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in env.get("OTEL_METRICS_EXPORTER", "none").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    if not names:
        return None
    if names != ["otlp"]:
        raise MetricsConfigError(
            f"OTEL_METRICS_EXPORTER={','.join(names)!r} is not supported: use otlp or none "
            "(Prometheus scrapes /metrics either way)"
        )
    protocol = env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    if protocol and protocol != "http/protobuf":
        raise MetricsConfigError(
            f"OTLP metrics over {protocol!r} are not supported: set OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="
            "http/protobuf and the collector's HTTP port (usually 4318)"
        )
    endpoint = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    if not endpoint:
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318")
        endpoint = base.rstrip("/") + "/v1/metrics"
    try:
        interval = float(env.get("OTEL_METRIC_EXPORT_INTERVAL", "60000")) / 1000
        timeout = float(env.get("OTEL_METRIC_EXPORT_TIMEOUT", "30000")) / 1000
    except ValueError as err:
        raise MetricsConfigError(f"OTEL_METRIC_EXPORT_INTERVAL/TIMEOUT must be milliseconds: {err}") from None
    if interval <= 0 or timeout <= 0:
        raise MetricsConfigError(
            "OTEL_METRIC_EXPORT_INTERVAL and OTEL_METRIC_EXPORT_TIMEOUT must be positive"
        )
    headers = _headers(
        env.get("OTEL_EXPORTER_OTLP_METRICS_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS", "")
    )
    attributes = _headers(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    return OtlpMetricsExporter(
        endpoint,
        env.get("OTEL_SERVICE_NAME") or service_name,
        interval,
        timeout,
        headers,
        attributes,
    )


def start_from_env(service_name: str) -> OtlpMetricsExporter | None:
    """Start the export the environment asks for (None: off). Raises MetricsConfigError for bad settings."""
    exporter = from_env(service_name)
    return exporter.start() if exporter is not None else None


def start_or_exit(service_name: str, command: str) -> OtlpMetricsExporter | None:
    """:func:`start_from_env` for a service's main: bad settings stop it with the message, before serving."""
    try:
        return start_from_env(service_name)
    except MetricsConfigError as err:
        raise SystemExit(f"{command}: {err}") from None
