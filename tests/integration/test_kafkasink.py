"""KafkaSink on a real Kafka: a CloudEvent POSTed to its address is on its topic in its content mode; an
IntegrationSink (log) writes what reaches it to the dispatcher's log."""

from __future__ import annotations

import asyncio
import json

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from conftest import Kev
from helpers import broker_doc, kafka_sink_doc, trigger_doc

EVENT_HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "sink-1",
    "ce-type": "dev.test.sink",
    "ce-source": "/tests/sink",
    "ce-partitionkey": "pk-9",
    "ce-region": "eu",
    "content-type": "application/json",
}


def _read_one(kafka: str, topic: str) -> ConsumerRecord:
    async def read() -> ConsumerRecord:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        try:
            for _ in range(100):
                batch = await consumer.getmany(timeout_ms=200)
                records = [r for rs in batch.values() for r in rs]
                if records:
                    assert len(records) == 1
                    return records[0]
            raise AssertionError(f"nothing on {topic}")
        finally:
            await consumer.stop()

    return asyncio.run(read())


def _post(kev: Kev, ns: str, name: str) -> None:
    sink = kev.wait_ready("KafkaSink", name, ns)
    assert sink.status.address is not None
    url = sink.status.address.url
    assert url == f"{kev.stack.ingress_url}/sinks/{ns}/{name}"
    response = kev.wait_for(
        lambda: (
            (r := kev.http.post(url, headers=EVENT_HEADERS, content=b'{"n": 1}')).status_code != 404 and r
        ),
        what="the KafkaSink's ingress",
    )
    assert response.status_code == 202, response.text


def test_structured_kafka_sink_writes_the_json_event_format(kev: Kev, ns: str, kafka: str) -> None:
    topic = f"{ns}-structured"
    kev.apply(kafka_sink_doc("archive", ns, topic, numPartitions=1, replicationFactor=1))
    _post(kev, ns, "archive")
    record = _read_one(kafka, topic)
    assert dict(record.headers) == {"content-type": b"application/cloudevents+json"}
    assert record.key == b"pk-9"
    assert orjson.loads(record.value) == {
        "specversion": "1.0",
        "id": "sink-1",
        "type": "dev.test.sink",
        "source": "/tests/sink",
        "partitionkey": "pk-9",
        "region": "eu",
        "datacontenttype": "application/json",
        "data": {"n": 1},
    }


def test_binary_kafka_sink_writes_ce_headers_and_the_data(kev: Kev, ns: str, kafka: str) -> None:
    topic = f"{ns}-binary"
    kev.apply(kafka_sink_doc("raw", ns, topic, numPartitions=1, replicationFactor=1, contentMode="binary"))
    _post(kev, ns, "raw")
    record = _read_one(kafka, topic)
    headers = {name: value.decode() for name, value in record.headers}
    assert headers == {
        "ce_specversion": "1.0",
        "ce_id": "sink-1",
        "ce_type": "dev.test.sink",
        "ce_source": "/tests/sink",
        "ce_partitionkey": "pk-9",
        "ce_region": "eu",
        "content-type": "application/json",
    }
    assert record.key == b"pk-9"
    assert record.value == b'{"n": 1}'


def test_deleting_a_kafka_sink_removes_its_ingress(kev: Kev, ns: str) -> None:
    kev.apply(kafka_sink_doc("gone", ns, f"{ns}-gone", numPartitions=1, replicationFactor=1))
    _post(kev, ns, "gone")
    kev.delete("KafkaSink", "gone", ns)
    url = f"{kev.stack.ingress_url}/sinks/{ns}/gone"
    kev.wait_for(
        lambda: kev.http.post(url, headers=EVENT_HEADERS, content=b"{}").status_code == 404,
        what="the ingress to go",
    )


def test_an_integration_sink_logs_the_events_a_trigger_delivers_to_it(kev: Kev, ns: str) -> None:
    kev.apply(
        broker_doc("default", ns),
        {
            "apiVersion": "sinks.knative.dev/v1alpha1",
            "kind": "IntegrationSink",
            "metadata": {"name": "audit-log", "namespace": ns},
            "spec": {"log": {"level": "info", "showHeaders": True, "loggerName": "audit"}},
        },
        trigger_doc(
            "to-log",
            ns,
            "default",
            "",
            subscriber={
                "ref": {
                    "apiVersion": "sinks.knative.dev/v1alpha1",
                    "kind": "IntegrationSink",
                    "name": "audit-log",
                }
            },
        ),
    )
    sink = kev.wait_ready("IntegrationSink", "audit-log", ns)
    assert sink.status.address.url.endswith(f"/integrationsinks/{ns}/audit-log")
    trigger = kev.wait_ready("Trigger", "to-log", ns)
    assert trigger.status.subscriberUri == sink.status.address.url
    assert kev.send(ns, "default", f"logged-{ns}", data=b'{"order":42}').status_code == 202
    log_path = kev.stack.services["dispatcher"].log_path
    assert log_path is not None

    def logged() -> dict | None:
        for line in log_path.read_text().splitlines():
            if f"logged-{ns}" in line and "keventing.integrationsink" in line:
                return json.loads(line)
        return None

    record = kev.wait_for(logged, what="the event in the dispatcher's log")
    assert (record["sink"], record["logger_name"], record["data"]) == (
        f"{ns}/audit-log",
        "audit",
        '{"order":42}',
    )
    assert record["attributes"]["type"] == "dev.test.event"
