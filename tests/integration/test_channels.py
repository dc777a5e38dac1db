"""Channels and Subscriptions on a real Kafka: ingress, fan-out, replies, forward-only, retries."""

from __future__ import annotations

import asyncio
import os
import subprocess
from typing import Any

from conftest import Kev, Reaction, Received, RecordingSink
from helpers import (
    broker_doc,
    channel_doc,
    in_memory_channel_doc,
    kafka_channel_doc,
    ref,
    subscription_doc,
    trigger_doc,
)

from kev.stack import kev_command
from keventing import events, naming


def ce_headers(event_id: str, type_: str = "dev.test.event", **extensions: str) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": type_,
        "ce-source": "/tests/channels",
        "content-type": "application/json",
    }
    headers.update({f"ce-{name}": value for name, value in extensions.items()})
    return headers


def reply_with(type_: str, data: bytes) -> Any:
    """A subscriber that answers every event with a reply of ``type_`` carrying ``data``."""

    def respond(received: Received) -> Reaction:
        assert received.event is not None
        return Reaction(200, data, ce_headers(f"reply-{received.event.id}", type_))

    return respond


def apply_ready(kev: Kev, ns: str, *documents: dict[str, Any]) -> dict[str, Any]:
    """Apply the documents and wait for each to be Ready (and its consumer group placed); return them by name."""
    kev.apply(*documents)
    return {d["metadata"]["name"]: kev.wait_ready(d["kind"], d["metadata"]["name"], ns) for d in documents}


def test_channel_address_is_on_the_receiver_and_its_ingress_answers_like_knative(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    ready = apply_ready(kev, ns, kafka_channel_doc("orders", ns, numPartitions=2))
    url = ready["orders"].status.address.url
    assert url == f"{kev.stack.ingress_url}/channels/{ns}/orders"
    assert kev.http.post(url, headers=ce_headers("ok-1"), content=b"{}").status_code == 202
    wrong_method = kev.http.get(url)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST, OPTIONS"
    unknown = kev.http.post(f"{kev.stack.ingress_url}/channels/{ns}/absent", headers=ce_headers("x"))
    assert unknown.status_code == 404
    invalid = kev.http.post(url, headers={"ce-specversion": "1.0", "ce-id": "no-type"}, content=b"{}")
    assert invalid.status_code == 400
    assert "type" in invalid.text


def test_channel_fans_out_every_event_unaltered_to_three_subscribers(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    subscriptions = [
        subscription_doc(f"s{i}", ns, "fanout", "Channel", subscriber={"uri": sink.url(f"{ns}/s{i}")})
        for i in range(3)
    ]
    ready = apply_ready(kev, ns, channel_doc("fanout", ns), *subscriptions)
    url = ready["fanout"].status.address.url
    sent: dict[str, tuple[dict[str, str], bytes]] = {}
    for i in range(5):
        headers = ce_headers(
            f"fan-{i}",
            subject="a subject with spaces%20and%25percent",
            time="2023-12-01T11:35:56.7181741Z",
            myext="%C3%9Cn%C3%AFc%C3%B6d%C3%A9",
        )
        headers["content-type"] = "application/octet-stream"
        body = os.urandom(200 + i)
        sent[f"fan-{i}"] = (headers, body)
        assert kev.http.post(url, headers=headers, content=body).status_code == 202
    for i in range(3):
        received = sink.wait_for(f"{ns}/s{i}", 5)
        asyncio.run(asyncio.sleep(0.3))  # anything extra would arrive now
        received = sink.requests(f"{ns}/s{i}")
        assert sorted(r.event.id for r in received if r.event) == sorted(sent)
        for request in received:
            assert request.event is not None
            headers, body = sent[request.event.id]
            assert request.body == body
            assert request.event.attributes == events.from_http(headers, body).attributes
            assert request.headers.get("prefer") == "reply"
    kafka_channel = kev.get("KafkaChannel", "fanout", ns)
    assert kafka_channel is not None
    assert [r.kind for r in kafka_channel.metadata.ownerReferences] == ["Channel"]
    assert len(kafka_channel.status.subscribers) == 3


def test_subscription_reply_goes_to_another_channel(kev: Kev, sink: RecordingSink, ns: str) -> None:
    sink.respond_with(f"{ns}/ask", reply_with("answer", b'{"answer":42}'))
    apply_ready(
        kev,
        ns,
        kafka_channel_doc("questions", ns),
        kafka_channel_doc("answers", ns),
        subscription_doc(
            "ask",
            ns,
            "questions",
            subscriber={"uri": sink.url(f"{ns}/ask")},
            reply=ref("KafkaChannel", "answers"),
        ),
        subscription_doc("collect", ns, "answers", subscriber={"uri": sink.url(f"{ns}/answers")}),
    )
    url = kev.get("KafkaChannel", "questions", ns).status.address.url
    assert kev.http.post(url, headers=ce_headers("q-1", "question"), content=b"{}").status_code == 202
    answer = sink.wait_for(f"{ns}/answers", 1)[0]
    assert answer.event is not None
    assert (answer.event.id, answer.event.type) == ("reply-q-1", "answer")
    assert answer.body == b'{"answer":42}'


def test_failing_reply_target_makes_the_whole_delivery_retried(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    sink.respond_with(f"{ns}/subscriber", reply_with("reply", b"{}"))
    sink.program(f"{ns}/reply", Reaction(500), Reaction(503))
    apply_ready(
        kev,
        ns,
        kafka_channel_doc("ch", ns),
        subscription_doc(
            "retrying",
            ns,
            "ch",
            subscriber={"uri": sink.url(f"{ns}/subscriber")},
            reply={"uri": sink.url(f"{ns}/reply")},
            delivery={"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.1S"},
        ),
    )
    url = kev.get("KafkaChannel", "ch", ns).status.address.url
    assert kev.http.post(url, headers=ce_headers("r-1"), content=b"{}").status_code == 202
    replies = sink.wait_for(f"{ns}/reply", 3)
    # Each failed reply sent the event to the subscriber again: the reply is part of the delivery.
    assert len(sink.requests(f"{ns}/subscriber")) == 3
    assert [r.event.id for r in replies if r.event] == ["reply-r-1"] * 3
    assert "prefer" not in replies[-1].headers


def test_subscription_with_only_a_reply_forwards_events_without_prefer_reply(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    apply_ready(
        kev,
        ns,
        channel_doc("relay", ns, template_kind="InMemoryChannel"),
        subscription_doc("forward", ns, "relay", "Channel", reply={"uri": sink.url(f"{ns}/forwarded")}),
    )
    url = kev.get("Channel", "relay", ns).status.address.url
    assert kev.http.post(url, headers=ce_headers("f-1"), content=b'{"x":1}').status_code == 202
    got = sink.wait_for(f"{ns}/forwarded", 1)[0]
    assert got.event is not None and got.event.id == "f-1"
    assert got.body == b'{"x":1}'
    assert "prefer" not in got.headers


def test_subscriber_without_reply_has_its_replies_dropped(kev: Kev, sink: RecordingSink, ns: str) -> None:
    """Were the reply put back on the channel (as a Broker does), "to-broker" would carry it to the trigger."""
    sink.respond_with(f"{ns}/noisy", reply_with("dropped", b"{}"))
    apply_ready(
        kev,
        ns,
        broker_doc("default", ns),
        trigger_doc("everything", ns, "default", sink.url(f"{ns}/broker")),
        kafka_channel_doc("ch", ns),
        subscription_doc("noisy", ns, "ch", subscriber={"uri": sink.url(f"{ns}/noisy")}),
        subscription_doc("to-broker", ns, "ch", reply=ref("Broker", "default")),
    )
    url = kev.get("KafkaChannel", "ch", ns).status.address.url
    assert kev.http.post(url, headers=ce_headers("d-1"), content=b"{}").status_code == 202
    sink.wait_for(f"{ns}/noisy", 1)
    sink.wait_for(f"{ns}/broker", 1)
    asyncio.run(asyncio.sleep(1.0))
    assert [r.event.id for r in sink.requests(f"{ns}/broker") if r.event] == ["d-1"]


def test_subscription_to_a_missing_channel_becomes_ready_when_it_appears(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    kev.apply(subscription_doc("early", ns, "later", subscriber={"uri": sink.url(f"{ns}/later")}))

    def reason() -> str | None:
        found = kev.get("Subscription", "early", ns)
        ready = found.status.condition("Ready") if found else None
        return ready.reason if ready is not None and ready.status == "False" else None

    assert kev.wait_for(reason, what="the Subscription's not-ready reason") == "ChannelReferenceFailed"
    message = kev.get("Subscription", "early", ns).status.condition("Ready").message
    assert 'KafkaChannel "later"' in message and "does not exist" in message
    apply_ready(kev, ns, kafka_channel_doc("later", ns))
    kev.wait_ready("Subscription", "early", ns)


def test_an_in_memory_channel_delivers_to_its_subscription_and_keeps_its_events_on_kafka(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    ready = apply_ready(
        kev,
        ns,
        in_memory_channel_doc("imc", ns),
        subscription_doc("s", ns, "imc", "InMemoryChannel", subscriber={"uri": sink.url(f"{ns}/imc")}),
    )
    channel = ready["imc"]
    assert channel.status.address.url == f"{kev.stack.ingress_url}/inmemorychannels/{ns}/imc"
    assert channel.status.annotations == {
        "kafka.eventing.knative.dev/topic": naming.channel_topic(ns, "imc", "InMemoryChannel")
    }
    assert (
        kev.http.post(channel.status.address.url, headers=ce_headers("m-1"), content=b'{"n":1}').status_code
        == 202
    )
    got = sink.wait_for(f"{ns}/imc", 1)[0]
    assert got.event is not None and got.event.id == "m-1"
    assert got.body == b'{"n":1}'
    subscribers = kev.wait_for(
        lambda: (found := kev.get("InMemoryChannel", "imc", ns)) and found.status.subscribers,
        what="the InMemoryChannel's subscribers",
    )
    assert [(s.uid, s.ready) for s in subscribers] == [(ready["s"].metadata.uid, "True")]

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kev.stack.bootstrap_servers,
        "KEVENTING_INSTANCE": kev.stack.instance,
        "COLUMNS": "200",
    }
    listed = subprocess.run(
        [*kev_command(), "get", "imc", "-n", ns], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("imc"))
    assert row.split()[1:3] == ["True", channel.status.address.url]
