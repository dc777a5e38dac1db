"""Trace context and the OTEL_* configuration, without any exporter endpoint."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from keventing import tracing
from keventing.tracing import Tracing, TracingConfigError, new_provider

SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
NOT_SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def _tracing(sampler: object) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = new_provider(sampler=sampler)  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider), exporter


def test_tracing_is_off_unless_an_exporter_is_named() -> None:
    assert tracing.from_env("svc", {}) is None
    assert tracing.from_env("svc", {"OTEL_TRACES_EXPORTER": "none"}) is None
    assert tracing.from_env("svc", {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}) is None


def test_an_unsupported_exporter_or_protocol_is_refused_with_what_to_set() -> None:
    with pytest.raises(TracingConfigError, match="zipkin.*use otlp, console or none"):
        tracing.from_env("svc", {"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(TracingConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"):
        tracing.from_env("svc", {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(TracingConfigError, match="grpc"):  # the services check before they serve
        tracing.check_env({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"})
    tracing.check_env({"OTEL_TRACES_EXPORTER": "otlp,console"})


def test_the_service_name_defaults_to_the_service_and_otel_service_name_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configured = tracing.from_env("keventing-receiver", {"OTEL_TRACES_EXPORTER": "console"})
    assert configured is not None
    assert configured.provider.resource.attributes["service.name"] == "keventing-receiver"
    configured.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "ingress-eu")
    renamed = tracing.from_env("keventing-receiver", {"OTEL_TRACES_EXPORTER": "console"})
    assert renamed is not None and renamed.provider.resource.attributes["service.name"] == "ingress-eu"
    renamed.shutdown()


def test_trace_context_is_read_from_record_headers_requests_and_event_attributes() -> None:
    assert tracing.from_record([("ce_id", b"1"), ("content-type", b"text/plain")]) is None
    assert tracing.from_record([("tracestate", b"a=1")]) is None  # a state without a parent is no context
    assert tracing.from_record([("traceparent", SAMPLED.encode()), ("tracestate", b"a=1")]) == {
        "traceparent": SAMPLED,
        "tracestate": "a=1",
    }
    assert tracing.from_request({"traceparent": SAMPLED}) == {"traceparent": SAMPLED}
    assert tracing.from_event({"id": "1", "traceparent": SAMPLED, "tracestate": "b=2"}) == {
        "traceparent": SAMPLED,
        "tracestate": "b=2",
    }
    assert tracing.sampled({"traceparent": SAMPLED})
    assert not tracing.sampled({"traceparent": NOT_SAMPLED})
    assert not tracing.sampled({"traceparent": "garbage"})


def test_a_child_span_continues_the_senders_trace_and_keeps_its_tracestate() -> None:
    traced, exporter = _tracing(ParentBased(ALWAYS_ON))
    span = traced.start(
        "ingress", {"traceparent": SAMPLED, "tracestate": "shop=1"}, SpanKind.PRODUCER, {"a": 1}
    )
    headers = traced.headers(span)
    span.end()
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", "0af7651916cd43dd8448eb211c80319c", "01")
    assert headers["tracestate"] == "shop=1"
    [exported] = exporter.get_finished_spans()
    assert exported.parent is not None and f"{exported.parent.span_id:016x}" == "b7ad6b7169203331"
    assert f"{exported.context.span_id:016x}" == span_id
    assert exported.attributes == {"a": 1}


def test_a_senders_not_sampled_context_passes_through_under_a_parent_based_sampler() -> None:
    traced, _ = _tracing(ParentBased(ALWAYS_ON))
    assert traced.passes_through({"traceparent": NOT_SAMPLED})
    assert not traced.passes_through({"traceparent": SAMPLED})
    assert not traced.passes_through(None)  # no context: a new trace is started
    always, _ = _tracing(ALWAYS_ON)
    assert not always.passes_through({"traceparent": NOT_SAMPLED})


def test_a_sampled_out_root_costs_no_recorded_span_but_still_travels_as_not_sampled() -> None:
    traced, exporter = _tracing(ParentBased(ALWAYS_OFF))
    span = traced.start("ingress", None, SpanKind.PRODUCER, {"a": 1})
    assert not span.is_recording()
    span.end()
    assert traced.headers(span)["traceparent"].endswith("-00")
    assert exporter.get_finished_spans() == ()


def test_a_ratio_sampled_root_is_decided_once_on_its_own_trace_id() -> None:
    traced, exporter = _tracing(ParentBased(TraceIdRatioBased(0.5)))
    kept = []
    for _ in range(400):
        span = traced.start("ingress", None, SpanKind.PRODUCER)
        span.end()
        if span.is_recording() or span.get_span_context().trace_flags.sampled:
            kept.append(span.get_span_context().trace_id)
    exported = [s.context.trace_id for s in exporter.get_finished_spans()]
    assert exported == kept
    assert 120 < len(kept) < 280  # about half: not half of a half
    ratio = TraceIdRatioBased(0.5)
    assert all(ratio.should_sample(None, trace_id, "ingress").decision.is_sampled() for trace_id in kept)
