"""Broker → Trigger → subscriber on a real Kafka: filters, replies, fidelity, status, topics."""

from __future__ import annotations

import asyncio
import base64
import os

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from conftest import Kev, Reaction, RecordingSink
from helpers import broker_doc, trigger_doc


def _setup(kev: Kev, ns: str, *triggers: dict) -> None:
    kev.apply(broker_doc("default", ns), *triggers)
    kev.wait_ready("Broker", "default", ns)
    for trigger in triggers:
        kev.wait_ready("Trigger", trigger["metadata"]["name"], ns)


def test_attribute_filter_delivers_matching_events_only(kev: Kev, sink: RecordingSink, ns: str) -> None:
    _setup(
        kev,
        ns,
        trigger_doc(
            "orders",
            ns,
            "default",
            sink.url(f"{ns}/orders"),
            filter={"attributes": {"type": "order.created"}},
        ),
        trigger_doc(
            "eu",
            ns,
            "default",
            sink.url(f"{ns}/eu"),
            filter={"attributes": {"type": "order.created", "region": "eu"}},
        ),
        trigger_doc(
            "any-region", ns, "default", sink.url(f"{ns}/any"), filter={"attributes": {"region": ""}}
        ),
        trigger_doc("all", ns, "default", sink.url(f"{ns}/all")),
    )
    sent = [
        ("1", "order.created", {"region": "eu"}),
        ("2", "order.created", {"region": "us"}),
        ("3", "order.created", {}),
        ("4", "order.deleted", {"region": "eu"}),
    ]
    for event_id, type_, extensions in sent:
        assert kev.send(ns, "default", event_id, type_, extensions=extensions).status_code == 202
    sink.wait_for(f"{ns}/all", 4)
    sink.wait_for(f"{ns}/orders", 3)
    sink.wait_for(f"{ns}/eu", 1)
    sink.wait_for(f"{ns}/any", 3)
    asyncio.run(asyncio.sleep(1.0))  # time for any wrongly selected event to arrive too
    assert sorted(e.id for e in sink.events(f"{ns}/orders")) == ["1", "2", "3"]
    assert [e.id for e in sink.events(f"{ns}/eu")] == ["1"]
    assert sorted(e.id for e in sink.events(f"{ns}/any")) == ["1", "2", "4"]
    assert sorted(e.id for e in sink.events(f"{ns}/all")) == ["1", "2", "3", "4"]


def test_reply_reenters_the_broker_and_reaches_another_trigger(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    reply_headers = {
        "ce-specversion": "1.0",
        "ce-id": "reply-1",
        "ce-type": "greeting.answered",
        "ce-source": "/responder",
        "content-type": "application/json",
    }
    sink.program(f"{ns}/responder", Reaction(200, b'{"answer":42}', reply_headers))
    _setup(
        kev,
        ns,
        trigger_doc(
            "ask", ns, "default", sink.url(f"{ns}/responder"), filter={"attributes": {"type": "greeting"}}
        ),
        trigger_doc(
            "answers",
            ns,
            "default",
            sink.url(f"{ns}/answers"),
            filter={"attributes": {"type": "greeting.answered"}},
        ),
    )
    assert kev.send(ns, "default", "q-1", "greeting").status_code == 202
    request = sink.wait_for(f"{ns}/responder", 1)[0]
    assert request.headers.get("prefer") == "reply"
    answer = sink.wait_for(f"{ns}/answers", 1)[0]
    assert answer.event is not None
    assert answer.event.id == "reply-1"
    assert answer.event.source == "/responder"
    assert answer.body == b'{"answer":42}'


def test_subscriber_receives_exactly_what_was_sent(kev: Kev, sink: RecordingSink, ns: str) -> None:
    _setup(kev, ns, trigger_doc("t", ns, "default", sink.url(f"{ns}/fidelity")))
    payload = os.urandom(3000)
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "exact-1",
        "ce-type": "dev.test.fidelity",
        "ce-source": "https://example.com/source?x=1&y=%C3%A9",
        "ce-subject": "a subject with spaces%20and%25percent",
        "ce-time": "2023-12-01T11:35:56.7181741Z",
        "ce-dataschema": "https://example.com/schema.json",
        "ce-myext": "%C3%9Cn%C3%AFc%C3%B6d%C3%A9%22quoted%22",
        "ce-num": "0042",
        "ce-partitionkey": "key-7",
        "content-type": "application/octet-stream; charset=binary",
    }
    response = kev.http.post(kev.broker_url(ns, "default"), headers=headers, content=payload)
    assert response.status_code == 202
    got = sink.wait_for(f"{ns}/fidelity", 1)[0]
    assert got.body == payload
    assert got.event is not None
    sent_event = _decode(headers, payload)
    assert got.event.attributes == sent_event.attributes
    assert got.event.attributes["myext"] == 'Ünïcödé"quoted"'
    assert got.event.attributes["subject"] == "a subject with spaces and%percent"
    assert got.event.attributes["time"] == "2023-12-01T11:35:56.7181741Z"


def test_structured_mode_event_arrives_in_binary_mode_with_same_attributes(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    _setup(kev, ns, trigger_doc("t", ns, "default", sink.url(f"{ns}/structured")))
    document = (
        b'{"specversion":"1.0","id":"s-1","type":"dev.test.structured","source":"/s",'
        b'"time":"2024-02-29T23:59:59.123456789+01:00","myext":"v","datacontenttype":"application/json",'
        b'"data":{"k":[1,2,3],"s":"x"}}'
    )
    binary = base64.b64encode(b"\x00\x01binary").decode()
    document_b64 = (
        '{"specversion":"1.0","id":"s-2","type":"dev.test.structured","source":"/s",'
        f'"datacontenttype":"application/octet-stream","data_base64":"{binary}"}}'
    ).encode()
    for body in (document, document_b64):
        response = kev.http.post(
            kev.broker_url(ns, "default"),
            headers={"content-type": "application/cloudevents+json; charset=utf-8"},
            content=body,
        )
        assert response.status_code == 202, response.text
    received = {r.event.id: r for r in sink.wait_for(f"{ns}/structured", 2) if r.event}
    first = received["s-1"]
    assert first.headers["ce-id"] == "s-1"
    assert first.headers["ce-time"] == "2024-02-29T23:59:59.123456789+01:00"
    assert first.headers["ce-myext"] == "v"
    assert first.headers["content-type"] == "application/json"
    assert first.body == b'{"k":[1,2,3],"s":"x"}'
    assert received["s-2"].body == b"\x00\x01binary"


def test_broker_topic_holds_binary_mode_records_readable_by_any_kafka_client(
    kev: Kev, sink: RecordingSink, ns: str, kafka: str
) -> None:
    _setup(kev, ns, trigger_doc("t", ns, "default", sink.url(f"{ns}/kcat")))
    topic = f"knative-broker-{ns}-default"

    async def read() -> list:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        try:
            records = []
            for _ in range(50):
                batch = await consumer.getmany(timeout_ms=200)
                records.extend(r for rs in batch.values() for r in rs)
                if records:
                    return records
            return records
        finally:
            await consumer.stop()

    response = kev.send(
        ns,
        "default",
        "kafka-1",
        "dev.test.kafka",
        extensions={"partitionkey": "pk-1", "color": "blue"},
        data=b'{"a":1}',
    )
    assert response.status_code == 202
    records = asyncio.run(read())
    assert len(records) == 1
    record = records[0]
    headers = {name: value.decode() for name, value in record.headers}
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_id"] == "kafka-1"
    assert headers["ce_type"] == "dev.test.kafka"
    assert headers["ce_source"] == "/tests"
    assert headers["ce_color"] == "blue"
    assert headers["content-type"] == "application/json"
    assert record.key == b"pk-1"
    assert record.value == b'{"a":1}'


def test_trigger_without_broker_is_not_ready_until_the_broker_exists(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    kev.apply(trigger_doc("early", ns, "later", sink.url(f"{ns}/early")))

    def trigger_condition():
        trigger = kev.get("Trigger", "early", ns)
        return trigger.status.condition("Ready") if trigger else None

    ready = kev.wait_for(trigger_condition, what="the trigger's status")
    assert ready.status == "False"
    assert ready.reason == "BrokerDoesNotExist"
    assert 'Broker "later" does not exist' in ready.message
    kev.apply(broker_doc("later", ns))
    trigger = kev.wait_ready("Trigger", "early", ns)
    assert trigger.status.subscriberUri == sink.url(f"{ns}/early")
    assert kev.send(ns, "later", "after-1").status_code == 202
    assert sink.wait_for(f"{ns}/early", 1)[0].event.id == "after-1"


def test_deleting_a_broker_deletes_its_topic_and_its_ingress(kev: Kev, ns: str, kafka: str) -> None:
    kev.apply(broker_doc("gone", ns))
    kev.wait_ready("Broker", "gone", ns)
    topic = f"knative-broker-{ns}-gone"

    async def topics() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            return await admin.list_topics()
        finally:
            await admin.close()

    assert topic in asyncio.run(topics())
    assert kev.delete("Broker", "gone", ns)
    kev.wait_for(lambda: topic not in asyncio.run(topics()), what="the topic to be deleted")
    kev.wait_for(lambda: kev.send(ns, "gone", "x").status_code == 404, what="the ingress to go away")


def test_deleting_a_trigger_deletes_its_consumer_group(
    kev: Kev, sink: RecordingSink, ns: str, kafka: str
) -> None:
    kev.apply(broker_doc("default", ns), trigger_doc("brief", ns, "default", sink.url(f"{ns}/brief")))
    kev.wait_ready("Trigger", "brief", ns)
    group = f"knative-trigger-{ns}-brief"

    async def groups() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            return {g[0] for g in await admin.list_consumer_groups()}
        finally:
            await admin.close()

    kev.wait_for(lambda: group in asyncio.run(groups()), what="the Trigger's consumer group")
    assert kev.delete("Trigger", "brief", ns)
    kev.wait_for(lambda: group not in asyncio.run(groups()), what="the consumer group to be deleted")
    # The Broker and its other uses are untouched.
    assert kev.send(ns, "default", "after").status_code == 202


def _decode(headers: dict[str, str], body: bytes):
    from keventing import events

    return events.from_http(headers, body)


def test_binary_reply_without_data_is_a_reply(kev: Kev, sink: RecordingSink, ns: str) -> None:
    reply_headers = {"ce-specversion": "1.0", "ce-id": "empty-reply", "ce-type": "pong", "ce-source": "/pong"}
    sink.program(f"{ns}/ping", Reaction(200, b"", reply_headers))
    _setup(
        kev,
        ns,
        trigger_doc("ping", ns, "default", sink.url(f"{ns}/ping"), filter={"attributes": {"type": "ping"}}),
        trigger_doc("pong", ns, "default", sink.url(f"{ns}/pong"), filter={"attributes": {"type": "pong"}}),
    )
    assert kev.send(ns, "default", "p-1", "ping").status_code == 202
    pong = sink.wait_for(f"{ns}/pong", 1)[0]
    assert pong.event is not None and pong.event.id == "empty-reply"
    assert pong.body == b""


def test_event_without_data_or_key_is_accepted_and_delivered(kev: Kev, sink: RecordingSink, ns: str) -> None:
    _setup(kev, ns, trigger_doc("t", ns, "default", sink.url(f"{ns}/nodata")))
    headers = {"ce-specversion": "1.0", "ce-id": "no-data", "ce-type": "dev.test.empty", "ce-source": "/s"}
    assert kev.http.post(kev.broker_url(ns, "default"), headers=headers).status_code == 202
    got = sink.wait_for(f"{ns}/nodata", 1)[0]
    assert got.event is not None and got.event.id == "no-data"
    assert got.body == b""
