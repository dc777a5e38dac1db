"""The dispatcher's spans and trace headers with a fake transport: filter, attempts, reply, dead letter."""

from __future__ import annotations

from aiokafka import ConsumerRecord
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from prometheus_client import CollectorRegistry

from dispatcher.dispatch import RecordDispatcher
from dispatcher.metrics import DispatcherMetrics
from dispatcher.replies import ReplyPublisher
from dispatcher.transport import Response
from keventing import events
from keventing.contract import DeliveryPolicy, Reply
from keventing.tracing import Tracing, new_provider
from unit.test_dispatch import DLS, SUBSCRIBER, FakeKafka, FakePost, Sleeps, _egress, _reply_response

SENDER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def _record(traceparent: str | None) -> ConsumerRecord:
    event = events.Event({"specversion": "1.0", "id": "e-1", "type": "dev.test", "source": "/t"}, b"{}")
    _, headers, value = events.to_kafka_binary(event)
    if traceparent is not None:
        headers.append(("traceparent", traceparent.encode()))
    return ConsumerRecord("topic", 0, 7, 1000, 0, None, value, None, 2, -1, headers)


def _dispatcher(
    script: dict, traced: bool, **egress: object
) -> tuple[RecordDispatcher, FakePost, FakeKafka, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = new_provider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    post, kafka = FakePost(script), FakeKafka()
    spec = _egress(**egress)
    dispatcher = RecordDispatcher(
        spec,
        post,
        ReplyPublisher(kafka.produce, post),
        DispatcherMetrics(CollectorRegistry()).for_egress(spec),
        5.0,
        sleep=Sleeps(),
        tracing=Tracing(provider) if traced else None,
    )
    return dispatcher, post, kafka, exporter


def _ids(traceparent: str) -> tuple[str, str]:
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


async def test_each_attempt_is_a_span_with_its_retry_number_and_status_under_the_filter_decision() -> None:
    reply = Reply(strategy="topic", topic="broker-topic")
    dispatcher, post, kafka, exporter = _dispatcher(
        {SUBSCRIBER: [Response(503), _reply_response()]}, True, reply=reply, delivery=DeliveryPolicy(retry=2)
    )
    event = dispatcher.select(_record(SENDER))
    assert event is not None
    outcome = await dispatcher.dispatch(event)
    assert outcome.result == "delivered"
    spans = {(s.name, s.attributes.get("keventing.retry")): s for s in exporter.get_finished_spans()}
    decision = spans[("filter Trigger ns/t", None)]
    assert decision.attributes["keventing.filter.matched"] is True
    assert f"{decision.parent.span_id:016x}" == "b7ad6b7169203331"
    first, second = spans[("delivery", 0)], spans[("delivery", 1)]
    assert (
        first.attributes["http.response.status_code"],
        second.attributes["http.response.status_code"],
    ) == (503, 200)
    assert first.parent.span_id == second.parent.span_id == decision.context.span_id
    sent = [_ids(headers["traceparent"]) for _, headers, _, _ in post.requests]
    assert sent == [(f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}") for s in (first, second)]
    reply_span = next(s for s in exporter.get_finished_spans() if s.name == "reply")
    assert reply_span.parent.span_id == second.context.span_id
    [(_, _, headers, _)] = kafka.records
    assert _ids(dict(headers)["traceparent"].decode()) == _ids(
        f"00-{reply_span.context.trace_id:032x}-{reply_span.context.span_id:016x}-01"
    )


async def test_a_refused_filter_decision_is_a_span_and_delivers_nothing() -> None:
    dispatcher, post, _, exporter = _dispatcher({}, True, filter={"attributes": {"type": "other"}})
    assert dispatcher.select(_record(SENDER)) is None
    [decision] = exporter.get_finished_spans()
    assert decision.attributes["keventing.filter.matched"] is False
    assert post.requests == []


async def test_a_not_sampled_record_creates_no_span_and_its_context_passes_through() -> None:
    dispatcher, post, _, exporter = _dispatcher(
        {SUBSCRIBER: [Response(500)], DLS: [Response(202)]},
        True,
        delivery=DeliveryPolicy(retry=0, dead_letter_url=DLS),
    )
    event = dispatcher.select(_record(UNSAMPLED))
    assert event is not None
    assert (await dispatcher.dispatch(event)).result == "dead_lettered"
    assert exporter.get_finished_spans() == ()
    assert [headers["traceparent"] for _, headers, _, _ in post.requests] == [UNSAMPLED, UNSAMPLED]


async def test_without_tracing_the_records_context_goes_to_subscriber_and_dead_letter_unchanged() -> None:
    dispatcher, post, _, _ = _dispatcher(
        {SUBSCRIBER: [Response(500)], DLS: [Response(202)]},
        False,
        delivery=DeliveryPolicy(retry=0, dead_letter_url=DLS),
    )
    event = dispatcher.select(_record(SENDER))
    assert event is not None
    await dispatcher.dispatch(event)
    assert [headers["traceparent"] for _, headers, _, _ in post.requests] == [SENDER, SENDER]
    plain = dispatcher.select(_record(None))
    assert plain is not None and "trace" not in plain.meta
    await dispatcher.dispatch(plain)
    assert all("traceparent" not in headers for _, headers, _, _ in post.requests[2:])


async def test_a_record_without_context_whose_new_trace_is_sampled_out_passes_that_decision_on() -> None:
    dispatcher, post, _, exporter = _dispatcher({}, True)
    assert dispatcher.tracing is not None
    dispatcher.tracing.sampler = ParentBased(ALWAYS_OFF)
    event = dispatcher.select(_record(None))
    assert event is not None
    await dispatcher.dispatch(event)
    assert exporter.get_finished_spans() == ()
    [(_, headers, _, _)] = post.requests
    assert headers["traceparent"].endswith("-00")
