"""Distributed tracing: W3C trace context across HTTP and Kafka, and OpenTelemetry spans when it is on.

Off unless ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp`` — OTLP over HTTP/protobuf — or
``console``); the rest is the OpenTelemetry SDK's own configuration (``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``,
``OTEL_SERVICE_NAME``, ``OTEL_BSP_*``). When off, a service holds no :class:`Tracing` at all (``None``):
the hot paths test that once and only carry a sender's ``traceparent``/``tracestate`` through, unchanged,
without creating spans or contexts.

The context travels as the ``traceparent`` and ``tracestate`` headers: of the HTTP request into the
receiver (or, when absent, the event's distributed-tracing extension attributes), of the Kafka record,
and of every HTTP request the dispatcher makes (subscriber, reply URL, dead-letter sink).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# The context as it travels: {"traceparent": ..., "tracestate": ...} (tracestate only when present).
TraceHeaders = dict[str, str]

_PROPAGATOR = TraceContextTextMapPropagator()


class TracingConfigError(ValueError):
    """The OTEL_* variables ask for something keventing cannot do; the message says what to set."""


def from_record(headers: Iterable[tuple[str, bytes]]) -> TraceHeaders | None:
    """The trace context a Kafka record carries, or None (no object made) when it carries none."""
    found: TraceHeaders | None = None
    for name, value in headers:
        if name == TRACEPARENT or name == TRACESTATE:
            if found is None:
                found = {}
            found[name] = value.decode("latin-1")
    return found if found is not None and TRACEPARENT in found else None


def from_request(headers: Mapping[str, str]) -> TraceHeaders | None:
    """The trace context of an HTTP request or response (header names lower-case), or None."""
    parent = headers.get(TRACEPARENT)
    if parent is None:
        return None
    state = headers.get(TRACESTATE)
    return {TRACEPARENT: parent, TRACESTATE: state} if state else {TRACEPARENT: parent}


def from_event(attributes: Mapping[str, str]) -> TraceHeaders | None:
    """The CloudEvents distributed-tracing extension (``traceparent``/``tracestate`` attributes), or None."""
    return from_request(attributes)


def record_headers(trace_headers: TraceHeaders) -> list[tuple[str, bytes]]:
    return [(name, value.encode("latin-1")) for name, value in trace_headers.items()]


def sampled(trace_headers: TraceHeaders) -> bool:
    """Whether the sampled flag of a W3C traceparent (``00-<trace>-<span>-<flags>``) is set."""
    flags = trace_headers[TRACEPARENT][53:55]
    try:
        return bool(int(flags, 16) & 1)
    except ValueError:
        return False


class Tracing:
    """The service's tracer: starts spans as children of a carried context and renders theirs."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("keventing")
        self.sampler = provider.sampler
        ids = provider.id_generator
        self.ids = ids if isinstance(ids, _PresetIds) else None
        # A parent-based sampler keeps a sender's "not sampled": such a context is passed through as is.
        self.parent_based = isinstance(provider.sampler, ParentBased)

    def start(
        self,
        name: str,
        parent: TraceHeaders | Context | None,
        kind: SpanKind,
        attributes: Mapping[str, Any] | None = None,
    ) -> Span:
        if parent is None:
            context = Context()  # a new trace, never whatever happens to be the current context
            if self.ids is not None:
                # The root's sampling decision first: a trace sampled out costs an id, not a whole span.
                trace_id = self.ids.random.generate_trace_id()
                if not self.sampler.should_sample(context, trace_id, name, kind).decision.is_sampled():
                    span_id = self.ids.random.generate_span_id()
                    return NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False))
                self.ids.preset = trace_id  # the same trace id, so that the same decision is made again
        elif isinstance(parent, Context):
            context = parent
        else:
            context = _PROPAGATOR.extract(parent)
        span = self.tracer.start_span(name, context=context, kind=kind)
        if attributes and span.is_recording():  # a sampled-out span is given nothing
            span.set_attributes(attributes)
        return span

    def headers(self, span: Span) -> TraceHeaders:
        """The context to send on behalf of ``span``: its traceparent (and the trace's tracestate)."""
        context = span.get_span_context()
        parent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        state = context.trace_state.to_header() if context.trace_state else ""
        return {TRACEPARENT: parent, TRACESTATE: state} if state else {TRACEPARENT: parent}

    def passes_through(self, carried: TraceHeaders | None) -> bool:
        """A sender's context marked not sampled under a parent-based sampler: no span, nothing changed."""
        return carried is not None and self.parent_based and not sampled(carried)

    def shutdown(self) -> None:
        self.provider.shutdown()


class _PresetIds(IdGenerator):
    """Random ids, but the next trace id may be chosen beforehand (:meth:`Tracing.start`'s root decision).
    Spans start on the event loop's thread only, so the preset is never taken by another span."""

    def __init__(self) -> None:
        self.random = RandomIdGenerator()
        self.preset: int | None = None

    def generate_span_id(self) -> int:
        return self.random.generate_span_id()

    def generate_trace_id(self) -> int:
        if self.preset is not None:
            trace_id, self.preset = self.preset, None
            return trace_id
        return self.random.generate_trace_id()


def new_provider(resource: Resource | None = None, sampler: Sampler | None = None) -> TracerProvider:
    """A TracerProvider whose sampled-out roots :class:`Tracing` can skip (``sampler`` None: from the env)."""
    return TracerProvider(sampler=sampler, resource=resource or Resource.create(), id_generator=_PresetIds())


def from_env(service_name: str, environ: Mapping[str, str] | None = None) -> Tracing | None:
    """The service's :class:`Tracing` from the OTEL_* variables; None when tracing is off (the default)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "none").split(",") if n.strip()]
    exporters = [e for e in (_exporter(name, env) for name in names if name != "none") if e is not None]
    if not exporters:
        return None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "unknown_service")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = new_provider(resource)  # the sampler from OTEL_TRACES_SAMPLER(_ARG)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider)


def check_env(environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`TracingConfigError` for OTEL_* settings keventing cannot honour, before serving."""
    env = os.environ if environ is None else environ
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "none").split(",") if n.strip()]
    for name in names:
        if name not in ("none", "console"):
            _exporter(name, env, build=False)


def _exporter(name: str, env: Mapping[str, str], build: bool = True) -> SpanExporter | None:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise TracingConfigError(f"OTEL_TRACES_EXPORTER={name!r} is not supported: use otlp, console or none")
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol.strip().lower() != "http/protobuf":
        raise TracingConfigError(
            f"OTLP protocol {protocol!r} is not supported: keventing exports OTLP over HTTP "
            "(set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf and the collector's HTTP port, usually 4318)"
        )
    if not build:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
