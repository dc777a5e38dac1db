"""Delivery guarantees on a real broker: retries, backoff, timeouts, Retry-After, dead letters, ordering."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest
from aiokafka import AIOKafkaProducer
from conftest import Kev, Reaction, RecordingSink
from helpers import broker_doc, trigger_doc

TOLERANCE_LOW = 0.05
TOLERANCE_HIGH = 0.4  # a loaded 2-core machine delays timers, it never fires them early


def _ready(kev: Kev, ns: str, *triggers: dict) -> None:
    kev.apply(broker_doc("default", ns), *triggers)
    for trigger in triggers:
        kev.wait_ready("Trigger", trigger["metadata"]["name"], ns)


def _gaps(requests: list) -> list[float]:
    return [b.at - a.at for a, b in zip(requests, requests[1:], strict=False)]


@pytest.mark.parametrize(
    ("policy", "delay", "expected"),
    [("linear", "PT0.3S", [0.3, 0.6, 0.9]), ("exponential", "PT0.15S", [0.3, 0.6, 1.2])],
)
def test_failing_subscriber_is_retried_with_the_backoff_policy(
    kev: Kev, sink: RecordingSink, ns: str, policy: str, delay: str, expected: list[float]
) -> None:
    path = f"{ns}/flaky"
    sink.program(path, Reaction(500), Reaction(503), Reaction(500))
    delivery = {"retry": 5, "backoffPolicy": policy, "backoffDelay": delay}
    _ready(kev, ns, trigger_doc("t", ns, "default", sink.url(path), delivery=delivery))
    assert kev.send(ns, "default", "retry-me").status_code == 202
    requests = sink.wait_for(path, 4)
    time.sleep(0.5)
    assert len(sink.requests(path)) == 4, "a success must end the retries"
    assert {r.event.id for r in requests} == {"retry-me"}
    for gap, want in zip(_gaps(requests), expected, strict=True):
        assert want - TOLERANCE_LOW <= gap <= want + TOLERANCE_HIGH, (
            f"gaps {_gaps(requests)}, expected {expected}"
        )


def test_timeout_turns_a_slow_answer_into_a_retry(kev: Kev, sink: RecordingSink, ns: str) -> None:
    path = f"{ns}/slow"
    sink.program(path, Reaction(200, delay=3.0))
    delivery = {"retry": 2, "backoffDelay": "PT0.1S", "timeout": "PT0.5S"}
    _ready(kev, ns, trigger_doc("t", ns, "default", sink.url(path), delivery=delivery))
    assert kev.send(ns, "default", "slow-1").status_code == 202
    requests = sink.wait_for(path, 2)
    assert 0.5 <= _gaps(requests)[0] <= 0.5 + 0.2 + TOLERANCE_HIGH


def test_client_error_goes_straight_to_the_dead_letter_sink(kev: Kev, sink: RecordingSink, ns: str) -> None:
    path, dls = f"{ns}/rejects", f"{ns}/dls"
    body = b'{"error":"bad payload"}'
    sink.program(
        path, Reaction(400, body, {"kne-reason": "validation", "kne-Detail": "field x", "X-Other": "no"})
    )
    delivery = {"retry": 5, "backoffDelay": "PT0.1S", "deadLetterSink": {"uri": sink.url(dls)}}
    _ready(kev, ns, trigger_doc("t", ns, "default", sink.url(path), delivery=delivery))
    response = kev.send(
        ns, "default", "dead-1", "dev.test.dead", extensions={"myext": "keep"}, data=b'{"payload":true}'
    )
    assert response.status_code == 202
    letter = sink.wait_for(dls, 1)[0]
    time.sleep(0.5)
    assert len(sink.requests(path)) == 1, "400 is not retried"
    event = letter.event
    assert event is not None
    assert event.attributes["knativeerrordest"] == sink.url(path)
    assert event.attributes["knativeerrorcode"] == "400"
    assert base64.b64decode(event.attributes["knativeerrordata"]) == body
    assert event.attributes["reason"] == "validation"
    assert event.attributes["detail"] == "field x"
    assert "other" not in event.attributes
    original = sink.requests(path)[0].event
    assert original is not None
    for name, value in original.attributes.items():
        assert event.attributes[name] == value
    assert letter.body == b'{"payload":true}'


def test_exhausted_retries_dead_letter_with_the_last_status(kev: Kev, sink: RecordingSink, ns: str) -> None:
    path, dls = f"{ns}/down", f"{ns}/dls"
    sink.program(path, *[Reaction(502, b"bad gateway")] * 3)
    delivery = {"retry": 2, "backoffDelay": "PT0.05S", "deadLetterSink": {"uri": sink.url(dls)}}
    _ready(kev, ns, trigger_doc("t", ns, "default", sink.url(path), delivery=delivery))
    assert kev.send(ns, "default", "dead-2").status_code == 202
    letter = sink.wait_for(dls, 1)[0]
    assert len(sink.requests(path)) == 3
    assert letter.event.attributes["knativeerrorcode"] == "502"


def test_reply_that_is_not_a_cloudevent_is_a_failed_delivery(kev: Kev, sink: RecordingSink, ns: str) -> None:
    path, dls = f"{ns}/garbage", f"{ns}/dls"
    sink.program(path, Reaction(200, b"this is not an event", {"content-type": "text/plain"}))
    delivery = {"retry": 0, "deadLetterSink": {"uri": sink.url(dls)}}
    _ready(kev, ns, trigger_doc("t", ns, "default", sink.url(path), delivery=delivery))
    assert kev.send(ns, "default", "garbage-1").status_code == 202
    letter = sink.wait_for(dls, 1)[0]
    assert letter.event.attributes["knativeerrorcode"] == "200"


@pytest.mark.parametrize(("retry_after", "cap", "expected"), [("1", "PT2S", 1.0), ("30", "PT0.6S", 0.6)])
def test_retry_after_is_honoured_up_to_retry_after_max(
    kev: Kev, sink: RecordingSink, ns: str, retry_after: str, cap: str, expected: float
) -> None:
    path = f"{ns}/busy"
    sink.program(path, Reaction(429, headers={"Retry-After": retry_after}))
    delivery = {"retry": 3, "backoffDelay": "PT0.05S", "retryAfterMax": cap}
    _ready(kev, ns, trigger_doc("t", ns, "default", sink.url(path), delivery=delivery))
    assert kev.send(ns, "default", "busy-1").status_code == 202
    gap = _gaps(sink.wait_for(path, 2))[0]
    assert expected - TOLERANCE_LOW <= gap <= expected + TOLERANCE_HIGH


def test_retry_after_is_ignored_without_retry_after_max(kev: Kev, sink: RecordingSink, ns: str) -> None:
    path = f"{ns}/busy"
    sink.program(path, Reaction(503, headers={"Retry-After": "5"}))
    _ready(
        kev,
        ns,
        trigger_doc("t", ns, "default", sink.url(path), delivery={"retry": 2, "backoffDelay": "PT0.1S"}),
    )
    assert kev.send(ns, "default", "busy-2").status_code == 202
    assert _gaps(sink.wait_for(path, 2))[0] < 0.2 + TOLERANCE_HIGH


def test_ordered_delivery_keeps_publish_order_despite_failures(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    path = f"{ns}/ordered"
    attempts: dict[str, int] = {}
    successes: list[str] = []

    def fail_first_attempt_of_every_third(received) -> Reaction:
        event_id = received.event.id
        attempts[event_id] = attempts.get(event_id, 0) + 1
        if int(event_id) % 3 == 0 and attempts[event_id] == 1:
            return Reaction(500)
        successes.append(event_id)
        return Reaction(202)

    sink.respond_with(path, fail_first_attempt_of_every_third)
    trigger = trigger_doc(
        "t",
        ns,
        "default",
        sink.url(path),
        delivery={"retry": 3, "backoffDelay": "PT0.05S"},
        annotations={"kafka.eventing.knative.dev/delivery.order": "ordered"},
    )
    _ready(kev, ns, trigger)
    for i in range(30):
        assert kev.send(ns, "default", str(i), extensions={"partitionkey": "same"}).status_code == 202
    sink.wait_for(path, 40)
    assert successes == [str(i) for i in range(30)]
    assert sink.max_in_flight[path] == 1


def test_unordered_delivery_has_several_events_in_flight(kev: Kev, sink: RecordingSink, ns: str) -> None:
    path = f"{ns}/parallel"
    sink.respond_with(path, lambda received: Reaction(202, delay=0.5))
    _ready(kev, ns, trigger_doc("t", ns, "default", sink.url(path)))
    for i in range(20):
        assert kev.send(ns, "default", f"u-{i}", extensions={"partitionkey": "same"}).status_code == 202
    sink.wait_for(path, 20)
    assert sink.max_in_flight[path] > 1


def test_dispatcher_metrics_count_deliveries_retries_dead_letters_and_lag(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    path, dls = f"{ns}/metered", f"{ns}/dls"
    sink.program(path, Reaction(500), Reaction(202), Reaction(400))
    delivery = {"retry": 2, "backoffDelay": "PT0.05S", "deadLetterSink": {"uri": sink.url(dls)}}
    _ready(kev, ns, trigger_doc("metered", ns, "default", sink.url(path), delivery=delivery))
    for event_id in ("m-1", "m-2"):
        assert kev.send(ns, "default", event_id, extensions={"partitionkey": "k"}).status_code == 202
        time.sleep(0.3)
    sink.wait_for(dls, 1)
    url = f"http://127.0.0.1:{kev.stack.dispatcher_port}/metrics"

    def sample(metric: str, **labels: str) -> float:
        for line in kev.http.get(url).text.splitlines():
            if line.startswith(metric + "{") and f'namespace_name="{ns}"' in line:
                if all(f'{k}="{v}"' in line for k, v in labels.items()):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    kev.wait_for(
        lambda: sample("keventing_dispatcher_dead_lettered_total") == 1, 10, "the dead-letter metric"
    )
    assert sample("event_count_total", name="metered", response_code="202") == 1
    assert sample("event_count_total", name="metered", response_code="400") == 1
    assert sample("keventing_dispatcher_retries_total", name="metered") == 1
    assert sample("keventing_dispatcher_in_flight", name="metered") == 0
    kev.wait_for(lambda: 'keventing_consumer_lag{kind="Trigger"' in kev.http.get(url).text, 10, "lag")


def test_subscriber_slower_than_the_session_timeout_causes_no_rebalance(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    """A delivery outlasting session.timeout.ms (10 s) must not cost the member its partitions: heartbeats
    and polls go on beside it, so nothing is redelivered and other events keep flowing meanwhile."""
    path = f"{ns}/sloth"
    sink.respond_with(path, lambda r: Reaction(202, delay=12.0 if r.event.id == "slow" else 0.0))
    _ready(kev, ns, trigger_doc("t", ns, "default", sink.url(path), delivery={"timeout": "PT30S"}))
    assert kev.send(ns, "default", "slow", extensions={"partitionkey": "k"}).status_code == 202
    sink.wait_for(path, 1)
    started = time.monotonic()
    for i in range(5):
        assert kev.send(ns, "default", f"fast-{i}", extensions={"partitionkey": "k"}).status_code == 202
    sink.wait_for(path, 6, timeout=10)
    assert time.monotonic() - started < 10, "events behind a slow one are delivered while it is in flight"
    time.sleep(14)  # past the slow delivery and a whole session timeout
    ids = [r.event.id for r in sink.requests(path)]
    assert sorted(ids) == sorted(["slow", *(f"fast-{i}" for i in range(5))]), f"redelivered: {ids}"


def test_lag_of_a_paused_partition_counts_every_record_behind_it(
    kev: Kev, sink: RecordingSink, ns: str, kafka: str
) -> None:
    """A partition whose queue is full is paused and no longer fetched; its lag must still grow with every
    record that arrives (the high-water mark is asked of Kafka, not taken from the last fetch)."""
    path = f"{ns}/stuck"
    sink.respond_with(path, lambda r: Reaction(202, delay=6.0))  # the in-flight limit every 6 s
    _ready(kev, ns, trigger_doc("stuck", ns, "default", sink.url(path), delivery={"timeout": "PT30S"}))
    topic = f"knative-broker-{ns}-default"
    total = 3000

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=5)
        await producer.start()
        try:
            for i in range(total):
                headers = [
                    ("ce_specversion", b"1.0"),
                    ("ce_id", f"lag-{i}".encode()),
                    ("ce_type", b"dev.test"),
                    ("ce_source", b"/lag"),
                ]
                await producer.send(topic, b"{}", partition=0, headers=headers)
                if i == 1200:  # let the dispatcher fetch enough to pause the partition
                    await producer.flush()
                    await asyncio.sleep(2)
            await producer.flush()
        finally:
            await producer.stop()

    try:
        asyncio.run(produce())
        url = f"http://127.0.0.1:{kev.stack.dispatcher_port}/metrics"

        def lag() -> float:
            for line in kev.http.get(url).text.splitlines():
                if line.startswith("keventing_consumer_lag{") and f'namespace_name="{ns}"' in line:
                    if 'partition="0"' in line:
                        return float(line.rsplit(" ", 1)[1])
            return 0.0

        # Before the fix the lag stayed near the ~1,200 records fetched before the pause.
        kev.wait_for(lambda: lag() >= total - 400, 15, "the lag to count the records after the pause")
    finally:
        kev.delete("Trigger", "stuck", ns)


def test_format_json_delivers_structured_mode_and_backoff_max_caps_the_waits(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    path = f"{ns}/structured"
    sink.program(path, Reaction(500), Reaction(500), Reaction(500), Reaction(202))
    # Exponential from 0.2 s: 0.4, 0.8, 1.6 without a cap; backoffMax holds the last two at 0.5 s.
    delivery = {"retry": 5, "backoffDelay": "PT0.2S", "backoffMax": "PT0.5S", "format": "json"}
    _ready(kev, ns, trigger_doc("t", ns, "default", sink.url(path), delivery=delivery))
    assert kev.send(ns, "default", "structured-1").status_code == 202
    requests = sink.wait_for(path, 4)
    for request in requests:
        assert request.headers["content-type"] == "application/cloudevents+json"
        assert not any(name.startswith("ce-") for name in request.headers)
        assert request.event is not None and request.event.id == "structured-1"
    gaps = _gaps(requests)
    assert 0.4 - TOLERANCE_LOW <= gaps[0] <= 0.4 + TOLERANCE_HIGH, gaps
    for gap in gaps[1:]:
        assert 0.5 - TOLERANCE_LOW <= gap <= 0.5 + TOLERANCE_HIGH, gaps
