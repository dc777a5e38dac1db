"""Observability on the real stack: W3C trace context from a sender through the receiver, Kafka and the
dispatcher to subscribers, replies and the dead-letter sink, the spans at a real OTLP/HTTP receiver, and
Knative's metric names on the services' own /metrics.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from conftest import Kev, Reaction, RecordingSink
from helpers import broker_doc, trigger_doc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from otlp import OtlpHttpReceiver
from prometheus_client.parser import text_string_to_metric_families

from kev.stack import Stack


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class OtlpReceiver(OtlpHttpReceiver):
    """An OTLP/HTTP trace receiver on loopback: decodes every ExportTraceServiceRequest it is sent."""

    PATH = "/v1/traces"
    REQUEST = ExportTraceServiceRequest
    RESPONSE = ExportTraceServiceResponse

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[ExportedSpan] = []

    def record(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    exported = ExportedSpan(
                        service=resource.get("service.name", ""),
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        attributes={a.key: _value(a.value) for a in span.attributes},
                    )
                    with self.lock:
                        self.spans.append(exported)

    def trace(self, trace_id: str) -> list[ExportedSpan]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def traced_kev(kafka: str, otlp: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kev]:
    """A stack of its own (controller, receiver, dispatcher as processes) exporting spans to ``otlp``."""
    stack = Stack.on_free_ports(
        kafka,
        tmp_path_factory.mktemp("traced-logs"),
        "trace",
        extra_env={
            "KEVENTING_DEFAULT_TOPIC_PARTITIONS": "1",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "KEVENTING_METRICS_EVENT_TYPE": "false",
        },
    )
    stack.start_all(("controller", "receiver", "dispatcher"))
    try:
        stack.wait_ready(timeout=90)
        yield Kev(stack)
    finally:
        stack.stop_all()


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _ids(traceparent: str) -> tuple[str, str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    sampled = int(flags, 16) & 1  # other bits may be set (e.g. W3C level 2's random trace id)
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16 and sampled, traceparent
    return trace_id, span_id


def _spans(otlp: OtlpReceiver, trace_id: str, *wanted: tuple[str, int]) -> list[ExportedSpan]:
    """Poll until the trace holds at least ``count`` spans of each ``(name prefix, count)``."""
    deadline = time.monotonic() + 30
    while True:
        spans = otlp.trace(trace_id)
        if all(sum(s.name.startswith(n) for s in spans) >= c for n, c in wanted):
            return spans
        if time.monotonic() > deadline:
            names = sorted(s.name for s in spans)
            raise AssertionError(f"trace {trace_id}: spans {names}, expected at least {wanted}")
        time.sleep(0.1)


def _one(spans: list[ExportedSpan], name: str, **attributes: Any) -> ExportedSpan:
    found = [
        s for s in spans if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, f"{name} {attributes}: {found} among {spans}"
    return found[0]


def test_trace_follows_an_event_to_its_subscriber_its_reply_and_the_next_trigger(
    traced_kev: Kev, otlp: OtlpReceiver, sink: RecordingSink, ns: str
) -> None:
    kev = traced_kev
    reply_headers = {
        "ce-specversion": "1.0",
        "ce-id": "confirmation-1",
        "ce-type": "order.confirmed",
        "ce-source": "/orders",
        "content-type": "application/json",
    }
    sink.program(f"{ns}/orders", Reaction(200, b'{"confirmed":true}', reply_headers))
    kev.apply(
        broker_doc("default", ns),
        trigger_doc(
            "orders",
            ns,
            "default",
            sink.url(f"{ns}/orders"),
            filter={"attributes": {"type": "order.created"}},
        ),
        trigger_doc(
            "confirmations",
            ns,
            "default",
            sink.url(f"{ns}/confirmations"),
            filter={"attributes": {"type": "order.confirmed"}},
        ),
    )
    for name in ("orders", "confirmations"):
        kev.wait_ready("Trigger", name, ns)
    traceparent, trace_id, sender_span = _traceparent()
    response = kev.http.post(
        kev.broker_url(ns, "default"),
        headers={
            "ce-specversion": "1.0",
            "ce-id": "order-1",
            "ce-type": "order.created",
            "ce-source": "/shop",
            "content-type": "application/json",
            "traceparent": traceparent,
            "tracestate": "shop=1",
        },
        content=b'{"order":1}',
    )
    assert response.status_code == 202, response.text

    delivered = sink.wait_for(f"{ns}/orders", 1)[0]
    delivered_trace, delivery_span_id = _ids(delivered.headers["traceparent"])
    assert delivered_trace == trace_id
    assert delivered.headers.get("tracestate") == "shop=1"  # the sender's vendor state travels along
    confirmed = sink.wait_for(f"{ns}/confirmations", 1)[0]
    assert confirmed.event is not None and confirmed.event.id == "confirmation-1"
    confirmed_trace, confirmed_span_id = _ids(confirmed.headers["traceparent"])
    assert confirmed_trace == trace_id

    spans = _spans(otlp, trace_id, ("ingress", 1), ("filter", 4), ("delivery", 2), ("reply", 1))
    ingress = _one(spans, f"ingress {ns}/default")
    assert ingress.service == "keventing-receiver"
    assert ingress.parent_id == sender_span
    assert ingress.attributes["cloudevents.event_id"] == "order-1"
    assert ingress.attributes["http.response.status_code"] == 202
    assert ingress.attributes["messaging.system"] == "kafka"

    # Each Trigger decides on the event; only the matching one delivers it, as a child of its decision.
    orders_filter = _one(spans, f"filter Trigger {ns}/orders", **{"cloudevents.event_id": "order-1"})
    assert orders_filter.service == "keventing-dispatcher"
    assert orders_filter.parent_id == ingress.span_id
    assert orders_filter.attributes["keventing.filter.matched"] is True
    skipped = [
        s for s in spans if s.name == f"filter Trigger {ns}/confirmations" and s.parent_id == ingress.span_id
    ]
    assert [s.attributes["keventing.filter.matched"] for s in skipped] == [False]

    delivery = _one(spans, "delivery", **{"url.full": sink.url(f"{ns}/orders")})
    assert delivery.parent_id == orders_filter.span_id
    assert delivery.span_id == delivery_span_id  # the subscriber's parent is the attempt's span
    assert delivery.attributes["http.response.status_code"] == 200
    assert delivery.attributes["keventing.retry"] == 0

    reply = _one(spans, "reply")
    assert reply.parent_id == delivery.span_id
    assert reply.attributes["cloudevents.event_id"] == "confirmation-1"
    second_filter = _one(spans, f"filter Trigger {ns}/confirmations", **{"keventing.filter.matched": True})
    assert second_filter.parent_id == reply.span_id
    second_delivery = _one(spans, "delivery", **{"url.full": sink.url(f"{ns}/confirmations")})
    assert second_delivery.parent_id == second_filter.span_id
    assert second_delivery.span_id == confirmed_span_id


def test_trace_follows_retries_into_the_dead_letter_sink(
    traced_kev: Kev, otlp: OtlpReceiver, sink: RecordingSink, ns: str
) -> None:
    kev = traced_kev
    sink.respond_with(f"{ns}/failing", lambda _: Reaction(500))
    delivery = {"retry": 1, "backoffDelay": "PT0.05S", "deadLetterSink": {"uri": sink.url(f"{ns}/dls")}}
    kev.apply(
        broker_doc("default", ns),
        trigger_doc("failing", ns, "default", sink.url(f"{ns}/failing"), delivery=delivery),
    )
    kev.wait_ready("Trigger", "failing", ns)
    traceparent, trace_id, sender_span = _traceparent()
    response = kev.send(ns, "default", "doomed-1", "order.created", extensions={})
    assert response.status_code == 202
    # The distributed-tracing extension in structured mode carries the sender's context as well.
    structured = (
        '{"specversion":"1.0","id":"doomed-2","type":"order.created","source":"/shop",'
        f'"traceparent":"{traceparent}","data":{{"order":2}}}}'
    )
    response = kev.http.post(
        kev.broker_url(ns, "default"),
        headers={"content-type": "application/cloudevents+json"},
        content=structured.encode(),
    )
    assert response.status_code == 202, response.text

    letters = sink.wait_for(f"{ns}/dls", 2)
    letter = next(r for r in letters if r.event is not None and r.event.id == "doomed-2")
    letter_trace, letter_parent = _ids(letter.headers["traceparent"])
    assert letter_trace == trace_id
    attempts = [r for r in sink.requests(f"{ns}/failing") if r.event is not None and r.event.id == "doomed-2"]
    assert len(attempts) == 2
    assert all(_ids(r.headers["traceparent"])[0] == trace_id for r in attempts)

    spans = _spans(otlp, trace_id, ("ingress", 1), ("filter", 1), ("delivery", 2), ("dead letter", 1))
    ingress = _one(spans, f"ingress {ns}/default")
    assert ingress.parent_id == sender_span
    assert ingress.attributes["cloudevents.event_id"] == "doomed-2"
    decision = _one(spans, f"filter Trigger {ns}/failing")
    assert decision.parent_id == ingress.span_id
    tries = sorted((s for s in spans if s.name == "delivery"), key=lambda s: s.attributes["keventing.retry"])
    assert [(s.attributes["keventing.retry"], s.attributes["http.response.status_code"]) for s in tries] == [
        (0, 500),
        (1, 500),
    ]
    assert {s.parent_id for s in tries} == {decision.span_id}
    assert [s.span_id for s in tries] == [_ids(r.headers["traceparent"])[1] for r in attempts]
    dead_letter = _one(spans, "dead letter")
    assert dead_letter.parent_id == decision.span_id
    assert dead_letter.span_id == letter_parent
    assert dead_letter.attributes["knativeerrorcode"] == 500
    assert dead_letter.attributes["http.response.status_code"] == 202

    # The event sent without a traceparent started a trace of its own at the receiver.
    plain = next(r for r in letters if r.event is not None and r.event.id == "doomed-1")
    own_trace, _ = _ids(plain.headers["traceparent"])
    assert own_trace != trace_id
    roots = [s for s in _spans(otlp, own_trace, ("ingress", 1)) if s.name.startswith("ingress")]
    assert [s.parent_id for s in roots] == [""]


def test_without_tracing_a_senders_context_passes_through_unchanged_and_none_is_invented(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    reply_headers = {
        "ce-specversion": "1.0",
        "ce-id": "answer-1",
        "ce-type": "question.answered",
        "ce-source": "/answers",
    }
    sink.program(f"{ns}/questions", Reaction(200, b"", reply_headers))
    delivery = {"retry": 0, "deadLetterSink": {"uri": sink.url(f"{ns}/dls")}}
    kev.apply(
        broker_doc("default", ns),
        trigger_doc(
            "questions",
            ns,
            "default",
            sink.url(f"{ns}/questions"),
            filter={"attributes": {"type": "question"}},
        ),
        trigger_doc(
            "answers",
            ns,
            "default",
            sink.url(f"{ns}/answers"),
            filter={"attributes": {"type": "question.answered"}},
        ),
        trigger_doc(
            "refused",
            ns,
            "default",
            sink.url(f"{ns}/refused"),
            filter={"attributes": {"type": "refused"}},
            delivery=delivery,
        ),
    )
    for name in ("questions", "answers", "refused"):
        kev.wait_ready("Trigger", name, ns)
    sink.respond_with(f"{ns}/refused", lambda _: Reaction(400))
    traceparent, _, _ = _traceparent()
    carried = {"traceparent": traceparent, "tracestate": "vendor=abc"}
    assert (
        kev.http.post(
            kev.broker_url(ns, "default"), headers={**_binary("q-1", "question"), **carried}
        ).status_code
        == 202
    )
    assert kev.http.post(kev.broker_url(ns, "default"), headers=_binary("r-1", "refused")).status_code == 202
    assert (
        kev.http.post(
            kev.broker_url(ns, "default"), headers={**_binary("r-2", "refused"), **carried}
        ).status_code
        == 202
    )

    question = sink.wait_for(f"{ns}/questions", 1)[0]
    assert (question.headers.get("traceparent"), question.headers.get("tracestate")) == (
        traceparent,
        "vendor=abc",
    )
    answer = sink.wait_for(f"{ns}/answers", 1)[0]
    assert answer.headers.get("traceparent") == traceparent  # the reply carries the sender's context on
    letters = {r.event.id: r for r in sink.wait_for(f"{ns}/dls", 2) if r.event is not None}
    assert "traceparent" not in letters["r-1"].headers
    assert (
        "traceparent"
        not in next(r for r in sink.requests(f"{ns}/refused") if r.event and r.event.id == "r-1").headers
    )
    assert letters["r-2"].headers.get("traceparent") == traceparent


def _binary(event_id: str, type_: str) -> dict[str, str]:
    return {"ce-specversion": "1.0", "ce-id": event_id, "ce-type": type_, "ce-source": "/tests"}


def _scraped(url: str, name: str, labels: dict[str, str]) -> float:
    text = httpx.get(url, timeout=10).text
    found = [
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and dict(s.labels) == labels
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def _samples(url: str, name: str) -> list[dict[str, str]]:
    """The label sets of the samples called ``name`` that a service's /metrics serves."""
    text = httpx.get(url, timeout=10).text
    return [dict(s.labels) for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def test_knative_metric_names_and_labels_are_served_beside_keventings(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", sink.url(f"{ns}/metrics")))
    kev.wait_ready("Trigger", "t", ns)
    assert kev.send(ns, "default", "m-1", "order.created").status_code == 202
    sink.wait_for(f"{ns}/metrics", 1)
    receiver = f"http://127.0.0.1:{kev.stack.receiver_port}/metrics"
    ingress = _samples(receiver, "kn_eventing_dispatch_duration_seconds_count")
    mine = [s for s in ingress if s["kn_broker_namespace"] == ns]
    assert mine == [
        {
            "kn_broker_namespace": ns,
            "kn_broker_name": "default",
            "cloudevents_type": "order.created",
            "http_response_status_code": "202",
        }
    ]
    # The same observations as keventing's millisecond histogram, in seconds.
    [legacy] = [s for s in _samples(receiver, "event_dispatch_latencies_count") if s["namespace_name"] == ns]
    assert _scraped(receiver, "event_dispatch_latencies_sum", legacy) / 1000 == pytest.approx(
        _scraped(receiver, "kn_eventing_dispatch_duration_seconds_sum", mine[0])
    )
    assert any(
        s["namespace_name"] == ns for s in _samples(receiver, "event_count_total")
    )  # keventing's own too
    dispatcher = f"http://127.0.0.1:{kev.stack.dispatcher_port}/metrics"

    def dispatched() -> list[dict[str, str]]:
        found = _samples(dispatcher, "kn_eventing_dispatch_duration_seconds_count")
        return [s for s in found if s["messaging_destination_name"] == f"trigger:{ns}/t"]

    assert kev.wait_for(dispatched, what="kn_eventing_dispatch_duration_seconds") == [
        {"messaging_destination_name": f"trigger:{ns}/t", "http_response_status_code": "202"}
    ]
    lag = _samples(dispatcher, "keventing_consumer_lag")
    assert any(s["namespace_name"] == ns and s["kind"] == "Trigger" and s["name"] == "t" for s in lag)


def test_the_event_type_label_can_be_dropped(traced_kev: Kev, sink: RecordingSink, ns: str) -> None:
    kev = traced_kev  # its services run with KEVENTING_METRICS_EVENT_TYPE=false
    kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", sink.url(f"{ns}/typeless")))
    kev.wait_ready("Trigger", "t", ns)
    for n, type_ in enumerate(("a.one", "b.two", "c.three")):
        assert kev.send(ns, "default", f"x-{n}", type_).status_code == 202
    sink.wait_for(f"{ns}/typeless", 3)
    receiver = f"http://127.0.0.1:{kev.stack.receiver_port}/metrics"
    ingress = [s for s in _samples(receiver, "event_count_total") if s["namespace_name"] == ns]
    assert [s["event_type"] for s in ingress] == [""]
    kn = [
        s
        for s in _samples(receiver, "kn_eventing_dispatch_duration_seconds_count")
        if s["kn_broker_namespace"] == ns
    ]
    assert [s["cloudevents_type"] for s in kn] == [""]
