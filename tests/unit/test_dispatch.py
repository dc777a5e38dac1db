"""One event's trip through the dispatcher, with a fake HTTP transport and a fake Kafka producer: no sockets."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from dispatcher.dispatch import RecordDispatcher
from dispatcher.metrics import DispatcherMetrics
from dispatcher.replies import ReplyPublisher
from dispatcher.transport import Response, TransportError
from keventing import events
from keventing.contract import DeliveryPolicy, Egress, FilterSpec, Reply

SUBSCRIBER = "http://subscriber/"
DLS = "http://dls/"
LABELS = {"namespace_name": "ns", "kind": "Trigger", "name": "t"}


class FakePost:
    """Answers each POST to a URL with the next scripted response (or raises it); records every request."""

    def __init__(self, script: dict[str, list[Response | Exception]]) -> None:
        self.script = {url: list(answers) for url, answers in script.items()}
        self.requests: list[tuple[str, dict[str, str], bytes, float | None]] = []

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float | None,
        ca_certs: str | None = None,
        audience: str | None = None,
    ) -> Response:
        self.requests.append((url, dict(headers), body, timeout))
        answers = self.script.get(url) or [Response(202)]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def urls(self) -> list[str]:
        return [url for url, *_ in self.requests]


class FakeKafka:
    def __init__(self, fail: bool = False) -> None:
        self.records: list[tuple[str, bytes | None, events.KafkaHeaders, bytes | None]] = []
        self.fail = fail

    async def produce(
        self, topic: str, key: bytes | None, headers: events.KafkaHeaders, value: bytes | None
    ) -> None:
        if self.fail:
            raise ConnectionError("kafka is down")
        self.records.append((topic, key, headers, value))


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _egress(**overrides: Any) -> Egress:
    fields: dict[str, Any] = {
        "id": "Trigger/ns/t",
        "kind": "Trigger",
        "namespace": "ns",
        "name": "t",
        "uid": "u",
        "topics": ("topic",),
        "consumer_group": "group",
        "destination": SUBSCRIBER,
    }
    return Egress(**{**fields, **overrides})


def _event(event_id: str = "e-1") -> events.Event:
    return events.Event(
        {"specversion": "1.0", "id": event_id, "type": "dev.test", "source": "/test"},
        b"{}",
        {"timestamp": 1000},
    )


def _reply_response() -> Response:
    headers = {"ce-specversion": "1.0", "ce-id": "r-1", "ce-type": "dev.reply", "ce-source": "/sub"}
    return Response(200, headers, b"reply")


class Harness:
    def __init__(
        self, egress: Egress, script: dict[str, list[Response | Exception]], kafka_fails: bool = False
    ):
        self.registry = CollectorRegistry()
        self.post = FakePost(script)
        self.kafka = FakeKafka(kafka_fails)
        self.sleeps = Sleeps()
        self.seen_replies: list[tuple[str, events.Event]] = []
        replies = ReplyPublisher(
            self.kafka.produce, self.post, lambda topic, e: self.seen_replies.append((topic, e))
        )
        metrics = DispatcherMetrics(self.registry).for_egress(egress)
        self.dispatcher = RecordDispatcher(
            egress, self.post, replies, metrics, 5.0, sleep=self.sleeps, wall_clock=lambda: 3.0
        )

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, {**LABELS, **labels}) or 0.0


async def test_a_2xx_delivers_the_event_in_binary_mode_with_prefer_reply() -> None:
    harness = Harness(_egress(), {SUBSCRIBER: [Response(202)]})
    outcome = await harness.dispatcher.dispatch(_event())
    assert outcome.result == "delivered"
    assert outcome.attempts == 1
    url, headers, body, timeout = harness.post.requests[0]
    assert (url, body, timeout) == (SUBSCRIBER, b"{}", 5.0)
    assert headers["ce-id"] == "e-1"
    assert headers["prefer"] == "reply"
    assert harness.sample("event_count_total", response_code="202", response_code_class="2xx") == 1
    assert harness.sample("event_processing_latencies_count") == 1
    assert harness.sample("event_processing_latencies_sum") == 2000.0  # wall clock 3 s, record at 1 s


@pytest.mark.parametrize("status", [500, 503, 404, 408, 409, 429])
async def test_retryable_statuses_are_retried_until_success(status: int) -> None:
    egress = _egress(delivery=DeliveryPolicy(retry=3, backoff_policy="linear", backoff_delay=0.5))
    harness = Harness(egress, {SUBSCRIBER: [Response(status), Response(status), Response(200)]})
    outcome = await harness.dispatcher.dispatch(_event())
    assert outcome.result == "delivered"
    assert outcome.attempts == 3
    assert harness.sleeps.waits == [0.5, 1.0]
    assert harness.sample("keventing_dispatcher_retries_total") == 2


async def test_transport_errors_are_retried_with_exponential_backoff() -> None:
    egress = _egress(delivery=DeliveryPolicy(retry=2, backoff_policy="exponential", backoff_delay=0.1))
    refused = TransportError("ClientConnectorError: refused")
    harness = Harness(egress, {SUBSCRIBER: [refused, refused, Response(200)]})
    outcome = await harness.dispatcher.dispatch(_event())
    assert outcome.result == "delivered"
    assert harness.sleeps.waits == [0.2, 0.4]


@pytest.mark.parametrize("status", [400, 401, 403, 413])
async def test_other_client_errors_are_not_retried(status: int) -> None:
    harness = Harness(_egress(delivery=DeliveryPolicy(retry=5)), {SUBSCRIBER: [Response(status)]})
    outcome = await harness.dispatcher.dispatch(_event())
    assert outcome.attempts == 1
    assert harness.sleeps.waits == []
    assert harness.sample("event_count_total", response_code=str(status), response_code_class="4xx") == 1


async def test_retry_after_is_honoured_up_to_retry_after_max() -> None:
    policy = DeliveryPolicy(retry=2, backoff_policy="linear", backoff_delay=0.1, retry_after_max=5.0)
    script: dict[str, list[Response | Exception]] = {
        SUBSCRIBER: [Response(429, {"retry-after": "3"}), Response(503, {"retry-after": "60"}), Response(200)]
    }
    harness = Harness(_egress(delivery=policy), script)
    await harness.dispatcher.dispatch(_event())
    assert harness.sleeps.waits == [3.0, 5.0]


async def test_retry_after_is_ignored_without_retry_after_max() -> None:
    policy = DeliveryPolicy(retry=1, backoff_policy="linear", backoff_delay=0.1)
    harness = Harness(
        _egress(delivery=policy), {SUBSCRIBER: [Response(429, {"retry-after": "3"}), Response(200)]}
    )
    await harness.dispatcher.dispatch(_event())
    assert harness.sleeps.waits == [0.1]


async def test_exhausted_retries_send_the_original_event_to_the_dead_letter_sink() -> None:
    policy = DeliveryPolicy(retry=1, backoff_delay=0.1, dead_letter_url=DLS)
    script: dict[str, list[Response | Exception]] = {
        SUBSCRIBER: [Response(500, {"kne-reason": "overloaded"}, b"boom")],
        DLS: [Response(202)],
    }
    harness = Harness(_egress(delivery=policy), script)
    outcome = await harness.dispatcher.dispatch(_event())
    assert outcome.result == "dead_lettered"
    assert harness.post.urls() == [SUBSCRIBER, SUBSCRIBER, DLS]
    _, headers, body, _ = harness.post.requests[-1]
    assert body == b"{}"
    assert "prefer" not in headers
    assert headers["ce-id"] == "e-1"
    assert headers["ce-knativeerrordest"] == SUBSCRIBER
    assert headers["ce-knativeerrorcode"] == "500"
    assert base64.b64decode(headers["ce-knativeerrordata"]) == b"boom"
    assert headers["ce-reason"] == "overloaded"
    assert harness.sample("keventing_dispatcher_dead_lettered_total") == 1
    assert harness.sample("event_count_total", response_code="500", response_code_class="5xx") == 1


async def test_a_failing_dead_letter_sink_is_retried_then_the_event_is_dropped() -> None:
    policy = DeliveryPolicy(retry=2, backoff_delay=0.1, dead_letter_url=DLS)
    harness = Harness(_egress(delivery=policy), {SUBSCRIBER: [Response(400)], DLS: [Response(503)]})
    outcome = await harness.dispatcher.dispatch(_event())
    assert (outcome.result, outcome.reason) == ("dropped", "dead_letter_sink_failed")
    assert harness.post.urls() == [SUBSCRIBER, DLS, DLS, DLS]
    assert harness.sample("keventing_dispatcher_dropped_total", reason="dead_letter_sink_failed") == 1
    assert harness.sample("keventing_dispatcher_retries_total") == 0  # retries count subscriber attempts only


async def test_without_a_dead_letter_sink_the_event_is_given_up_on() -> None:
    harness = Harness(_egress(), {SUBSCRIBER: [Response(500)]})
    outcome = await harness.dispatcher.dispatch(_event())
    assert (outcome.result, outcome.reason) == ("dropped", "no_dead_letter_sink")
    assert harness.sample("keventing_dispatcher_dropped_total", reason="no_dead_letter_sink") == 1


async def test_a_reply_is_published_to_the_broker_topic() -> None:
    egress = _egress(reply=Reply(strategy="topic", topic="broker-topic"))
    harness = Harness(egress, {SUBSCRIBER: [_reply_response()]})
    outcome = await harness.dispatcher.dispatch(_event())
    assert outcome.result == "delivered"
    [(topic, _, headers, value)] = harness.kafka.records
    assert (topic, value) == ("broker-topic", b"reply")
    assert ("ce_id", b"r-1") in headers
    assert [(t, e.id) for t, e in harness.seen_replies] == [("broker-topic", "r-1")]
    assert harness.sample("keventing_dispatcher_replies_total") == 1


async def test_a_reply_is_posted_to_the_reply_url() -> None:
    egress = _egress(reply=Reply(strategy="url", url="http://reply/"))
    harness = Harness(egress, {SUBSCRIBER: [_reply_response()], "http://reply/": [Response(202)]})
    outcome = await harness.dispatcher.dispatch(_event())
    assert outcome.result == "delivered"
    url, headers, body, timeout = harness.post.requests[-1]
    assert (url, body, timeout) == ("http://reply/", b"reply", None)
    assert headers["ce-id"] == "r-1"
    assert "prefer" not in headers


async def test_a_discarded_reply_goes_nowhere() -> None:
    harness = Harness(_egress(), {SUBSCRIBER: [_reply_response()]})
    outcome = await harness.dispatcher.dispatch(_event())
    assert outcome.result == "delivered"
    assert harness.post.urls() == [SUBSCRIBER]
    assert harness.kafka.records == []
    assert harness.sample("keventing_dispatcher_replies_total") == 0


async def test_a_failed_reply_fails_the_delivery_and_retries_all_of_it() -> None:
    egress = _egress(
        reply=Reply(strategy="url", url="http://reply/"),
        delivery=DeliveryPolicy(retry=1, backoff_delay=0.1, dead_letter_url=DLS),
    )
    script: dict[str, list[Response | Exception]] = {
        SUBSCRIBER: [_reply_response()],
        "http://reply/": [Response(500)],
    }
    harness = Harness(egress, script)
    outcome = await harness.dispatcher.dispatch(_event())
    assert outcome.result == "dead_lettered"
    assert harness.post.urls() == [SUBSCRIBER, "http://reply/", SUBSCRIBER, "http://reply/", DLS]
    _, headers, _, _ = harness.post.requests[-1]
    assert headers["ce-knativeerrorcode"] == "500"
    assert b"reply target http://reply/ answered 500" in base64.b64decode(headers["ce-knativeerrordata"])


async def test_a_reply_that_kafka_refuses_fails_the_delivery() -> None:
    egress = _egress(reply=Reply(strategy="topic", topic="broker-topic"))
    harness = Harness(egress, {SUBSCRIBER: [_reply_response()]}, kafka_fails=True)
    outcome = await harness.dispatcher.dispatch(_event())
    assert (outcome.result, outcome.reason) == ("dropped", "no_dead_letter_sink")
    assert outcome.last.error is not None and "reply could not be forwarded" in outcome.last.error


async def test_a_2xx_body_that_is_not_a_cloudevent_is_a_failed_delivery() -> None:
    harness = Harness(_egress(), {SUBSCRIBER: [Response(200, {"content-type": "text/plain"}, b"hello")]})
    outcome = await harness.dispatcher.dispatch(_event())
    assert outcome.result == "dropped"
    assert outcome.last.error is not None and "not a CloudEvent" in outcome.last.error


async def test_a_subscription_without_subscriber_forwards_to_its_reply_target() -> None:
    egress = _egress(destination=None, reply=Reply(strategy="topic", topic="next"))
    harness = Harness(egress, {})
    outcome = await harness.dispatcher.dispatch(_event())
    assert outcome.result == "delivered"
    assert [topic for topic, *_ in harness.kafka.records] == ["next"]
    assert harness.post.requests == []


async def test_a_crash_inside_the_dispatch_drops_the_event_instead_of_raising() -> None:
    class Broken(FakePost):
        async def post(
            self,
            url: str,
            headers: Mapping[str, str],
            body: bytes,
            timeout: float | None,
            ca_certs: str | None = None,
            audience: str | None = None,
        ) -> Response:
            raise RuntimeError("bug")

    harness = Harness(_egress(), {})
    harness.dispatcher.post = Broken({})
    outcome = await harness.dispatcher.dispatch(_event())
    assert (outcome.result, outcome.reason) == ("dropped", "internal_error")
    assert harness.sample("keventing_dispatcher_dropped_total", reason="internal_error") == 1


async def test_a_crash_inside_the_dispatch_dead_letters_the_event_when_there_is_a_sink() -> None:
    class BrokenForTheSubscriber(FakePost):
        async def post(
            self,
            url: str,
            headers: Mapping[str, str],
            body: bytes,
            timeout: float | None,
            ca_certs: str | None = None,
            audience: str | None = None,
        ) -> Response:
            if url == SUBSCRIBER:
                raise ValueError("cannot encode that header")
            return await super().post(url, headers, body, timeout)

    egress = _egress(delivery=DeliveryPolicy(dead_letter_url=DLS))
    harness = Harness(egress, {})
    post = BrokenForTheSubscriber({DLS: [Response(202)]})
    harness.dispatcher.post = post
    outcome = await harness.dispatcher.dispatch(_event("crash-1"))
    assert outcome.result == "dead_lettered"
    [(url, headers, _body, _timeout)] = post.requests
    assert url == DLS
    assert headers["ce-id"] == "crash-1"
    assert "ValueError" in base64.b64decode(headers["ce-knativeerrordata"]).decode()
    assert harness.sample("keventing_dispatcher_dead_lettered_total") == 1
    assert harness.sample("keventing_dispatcher_dropped_total", reason="internal_error") == 0


# ------------------------------------------------------------------------------------------ selection


def _record(headers: list[tuple[str, bytes]], value: bytes | None = b"{}", offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord("topic", 0, offset, 1000, 0, None, value, None, len(value or b""), 0, headers)


def _binary(event_type: str) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"e-1"),
        ("ce_type", event_type.encode()),
        ("ce_source", b"/test"),
        ("content-type", b"application/json"),
    ]


def test_selection_filters_binary_and_structured_records_on_their_attributes() -> None:
    harness = Harness(_egress(filter=FilterSpec(attributes={"type": "dev.wanted"})), {})
    wanted = harness.dispatcher.select(_record(_binary("dev.wanted"), b'{"a": 1}'))
    assert wanted is not None
    assert wanted.attributes["type"] == "dev.wanted"
    assert wanted.attributes["datacontenttype"] == "application/json"
    assert (wanted.data, wanted.meta["timestamp"]) == (b'{"a": 1}', 1000)
    assert harness.dispatcher.select(_record(_binary("dev.other"))) is None

    structured = b'{"specversion": "1.0", "id": "s-1", "type": "dev.wanted", "source": "/s", "data": 1}'
    content_type = [("content-type", b"application/cloudevents+json")]
    selected = harness.dispatcher.select(_record(content_type, structured))
    assert selected is not None and selected.attributes["id"] == "s-1"
    assert harness.dispatcher.select(_record(content_type, structured.replace(b"wanted", b"other"))) is None
    assert harness.dispatcher.select(_record([], b"not an event")) is None
    assert harness.sample("keventing_dispatcher_filtered_total") == 3


def test_a_record_meant_for_one_egress_alone_is_passed_over_by_the_others() -> None:
    harness = Harness(_egress(), {})
    own = harness.dispatcher.egress.id
    for_us = [("keventing_target", own.encode()), *_binary("dev.x")]
    for_another = [("keventing_target", b"Trigger/ns/another"), *_binary("dev.x")]
    selected = harness.dispatcher.select(_record(for_us))
    assert selected is not None and "keventing_target" not in selected.attributes
    assert harness.dispatcher.select(_record(for_another)) is None
    assert harness.dispatcher.select(_record(_binary("dev.x"))) is not None


async def test_attempts_made_before_a_restart_count_against_the_retry_limit() -> None:
    egress = _egress(delivery=DeliveryPolicy(retry=3, backoff_delay=0.1, dead_letter_url=DLS))
    recorded: list[int] = []
    dues: list[float | None] = []

    async def on_failure(failed: int, due: float | None) -> None:
        recorded.append(failed)
        dues.append(due)

    # Three attempts failed before the restart: one is left, then the dead-letter sink.
    harness = Harness(egress, {SUBSCRIBER: [Response(503)], DLS: [Response(202)]})
    outcome = await harness.dispatcher.dispatch(_event(), 3, on_failure)
    assert (outcome.result, outcome.attempts) == ("dead_lettered", 4)
    assert harness.post.urls() == [SUBSCRIBER, DLS]
    assert recorded == [4]

    # All four failed before it: straight to the dead-letter sink, the subscriber is not called again.
    harness = Harness(egress, {SUBSCRIBER: [Response(503)], DLS: [Response(202)]})
    outcome = await harness.dispatcher.dispatch(_event(), 4, on_failure)
    assert outcome.result == "dead_lettered"
    assert harness.post.urls() == [DLS]

    # A fresh event reports each failed attempt before the next one.
    recorded.clear()
    harness = Harness(egress, {SUBSCRIBER: [Response(503), Response(503), Response(202)]})
    outcome = await harness.dispatcher.dispatch(_event(), 0, on_failure)
    assert (outcome.result, outcome.attempts) == ("delivered", 3)
    assert recorded == [1, 2]
    # Each report carries when the next attempt is due (the harness's wall clock reads 3.0, backoff 0.1 linear).
    assert dues[-2:] == [3.0 + harness.sleeps.waits[0], 3.0 + harness.sleeps.waits[1]]


async def test_a_resumed_retry_waits_out_the_backoff_its_previous_owner_set() -> None:
    egress = _egress(delivery=DeliveryPolicy(retry=3, backoff_delay=0.1, dead_letter_url=DLS))
    # The previous owner failed twice and meant to try again at wall-clock 10.5; the clock reads 3.0.
    harness = Harness(egress, {SUBSCRIBER: [Response(202)]})
    outcome = await harness.dispatcher.dispatch(_event(), 2, None, due=10.5)
    assert (outcome.result, outcome.attempts) == ("delivered", 3)
    assert harness.sleeps.waits == [7.5]
    # Already past due: no wait at all.
    harness = Harness(egress, {SUBSCRIBER: [Response(202)]})
    await harness.dispatcher.dispatch(_event(), 2, None, due=1.0)
    assert harness.sleeps.waits == [0.0]


async def test_backoff_max_caps_each_wait_and_retry_after_still_has_its_own_cap() -> None:
    policy = DeliveryPolicy(
        retry=5, backoff_policy="exponential", backoff_delay=1.0, backoff_max=5.0, retry_after_max=30.0
    )
    busy = Response(503, {"retry-after": "20"})
    script: dict[str, list[Response | Exception]] = {
        SUBSCRIBER: [Response(500), Response(500), Response(500), busy, Response(200)]
    }
    harness = Harness(_egress(delivery=policy), script)
    outcome = await harness.dispatcher.dispatch(_event())
    assert outcome.result == "delivered"
    # 2, 4, then 8 capped at 5; a Retry-After of 20 s is honoured (it is retryAfterMax's to bound).
    assert harness.sleeps.waits == [2.0, 4.0, 5.0, 20.0]


async def test_format_json_delivers_in_structured_mode_to_subscriber_and_dead_letter_sink() -> None:
    policy = DeliveryPolicy(retry=0, format="json", dead_letter_url=DLS)
    harness = Harness(_egress(delivery=policy), {SUBSCRIBER: [Response(500)], DLS: [Response(202)]})
    outcome = await harness.dispatcher.dispatch(_event())
    assert outcome.result == "dead_lettered"
    for url, headers, body, _ in harness.post.requests:
        assert headers["content-type"] == "application/cloudevents+json", url
        assert not any(name.startswith("ce-") for name in headers), url
        sent = events.from_http(headers, body)
        assert (sent.attributes["id"], sent.data) == ("e-1", b"{}"), url
    assert harness.post.urls() == [SUBSCRIBER, DLS]
    assert "knativeerrorcode" in events.from_http(*harness.post.requests[1][1:3]).attributes
