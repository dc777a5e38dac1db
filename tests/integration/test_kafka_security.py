"""Kafka connections secured with TLS and SASL, on real secured embedded Kafkas (tests/kafka_security.py)."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from conftest import Kev, Reaction, RecordingSink
from helpers import broker_doc, kafka_sink_doc, kafka_source_doc, trigger_doc
from kafka_security import SecuredKafka

from kev.stack import Stack, kev_command
from keventing.kafka.client import TopicSpec, admin_client, ensure_topic, make_consumer, make_producer
from keventing.kafka.connection import KafkaConnection
from keventing.naming import TOPIC_ANNOTATION
from keventing.resources import Condition


@pytest.fixture(scope="module")
def sasl_ssl_kev(sasl_ssl_kafka: SecuredKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kev]:
    """A keventing stack whose own connection (every client of every service) is SASL_SSL."""
    ca = tmp_path_factory.mktemp("sasl-ssl-ca") / "ca.crt"
    ca.write_text(sasl_ssl_kafka.pki.ca)
    secret = sasl_ssl_kafka.secret
    stack = Stack.on_free_ports(
        sasl_ssl_kafka.bootstrap_servers,
        tmp_path_factory.mktemp("sasl-ssl-logs"),
        "sec",
        extra_env={
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USER": secret["user"],
            "KAFKA_SASL_PASSWORD": secret["password"],
            "KAFKA_SSL_CA_FILE": str(ca),
            "KEVENTING_DEFAULT_TOPIC_PARTITIONS": "2",
        },
    )
    stack.start_all()
    try:
        stack.wait_ready(timeout=90)
        yield Kev(stack)
    finally:
        stack.stop_all()


def _logs(kev: Kev) -> str:
    return "".join(Path(s.log_path).read_text() for s in kev.stack.services.values() if s.log_path)


def test_the_quickstart_path_works_when_every_service_connects_with_sasl_ssl(
    sasl_ssl_kev: Kev, sink: RecordingSink, ns: str
) -> None:
    kev = sasl_ssl_kev
    kev.apply(broker_doc("default", ns), trigger_doc("display", ns, "default", sink.url(f"{ns}/display")))
    kev.wait_ready("Trigger", "display", ns)
    assert kev.send(ns, "default", "secured-1").status_code == 202
    [received] = sink.wait_for(f"{ns}/display", 1)
    assert received.event is not None and received.event.id == "secured-1"
    # The CLI reads the same variables: kev get sees the Broker over SASL_SSL.
    env = {**os.environ, **kev.stack.env()}
    result = subprocess.run(
        [*kev_command(), "get", "brokers", "-n", ns], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "default" in result.stdout and "True" in result.stdout
    # Never a credential in a log line.
    assert "keventing-secret" not in _logs(kev)


# ------------------------------------------------------------------ per-resource connections


def _secret_doc(name: str, namespace: str, values: dict[str, str]) -> dict[str, Any]:
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def _net(secret: str, tls: bool = True) -> dict[str, Any]:
    """Knative's KafkaSource spec.net: SASL (SCRAM-SHA-512) over TLS, every value a secretKeyRef."""

    def ref(key: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": secret, "key": key}}

    return {
        "sasl": {
            "enable": True,
            "user": ref("user"),
            "password": ref("password"),
            "type": ref("sasl.mechanism"),
        },
        "tls": {"enable": tls, "caCert": ref("ca.crt")},
    }


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _create_topic(connection: KafkaConnection, topic: str) -> None:
    async with admin_client(connection) as admin:
        await ensure_topic(admin, TopicSpec(topic, 1, 1))


async def _produce(connection: KafkaConnection, topic: str, value: bytes) -> None:
    producer = make_producer(connection)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value)
    finally:
        await producer.stop()


async def _read_one(connection: KafkaConnection, topic: str) -> ConsumerRecord:
    consumer = make_consumer(connection, None, auto_offset_reset="earliest")
    consumer.subscribe([topic])
    await consumer.start()
    try:
        for _ in range(150):
            batch = await consumer.getmany(timeout_ms=200)
            records = [r for rs in batch.values() for r in rs]
            if records:
                return records[0]
        raise AssertionError(f"nothing on {topic}")
    finally:
        await consumer.stop()


def _not_ready(kev: Kev, kind: str, name: str, ns: str, reason: str, timeout: float = 60.0) -> Condition:
    def condition() -> Condition | None:
        resource = kev.get(kind, name, ns)
        ready = resource.status.condition("Ready") if resource is not None else None
        return ready if ready is not None and ready.status == "False" and ready.reason == reason else None

    found: Condition = kev.wait_for(condition, timeout, f"{kind} {name} not Ready with reason {reason}")
    return found


def test_a_kafka_source_reads_a_second_cluster_over_sasl_ssl_with_its_spec_net(
    kev: Kev, sink: RecordingSink, ns: str, sasl_ssl_kafka: SecuredKafka
) -> None:
    topic = f"{ns}-secured-orders"
    _run(_create_topic(sasl_ssl_kafka.connection, topic))
    _run(_produce(sasl_ssl_kafka.connection, topic, b'{"order": 1}'))
    kev.apply(
        _secret_doc("kafka-creds", ns, sasl_ssl_kafka.secret),
        kafka_source_doc(
            "orders", ns, sasl_ssl_kafka.bootstrap_servers, [topic], {"uri": sink.url(f"{ns}/orders")},
            net=_net("kafka-creds"), initialOffset="earliest",
        ),
    )  # fmt: skip
    kev.wait_ready("KafkaSource", "orders", ns)
    [received] = sink.wait_for(f"{ns}/orders", 1, timeout=60)
    assert received.body == b'{"order": 1}'
    assert received.event is not None and received.event.type == "dev.knative.kafka.event"


def test_a_kafka_source_with_a_wrong_password_is_not_ready_and_says_so(
    kev: Kev, sink: RecordingSink, ns: str, sasl_ssl_kafka: SecuredKafka
) -> None:
    wrong = {**sasl_ssl_kafka.secret, "password": "not-the-password"}
    kev.apply(
        _secret_doc("kafka-creds", ns, wrong),
        kafka_source_doc(
            "orders", ns, sasl_ssl_kafka.bootstrap_servers, ["anything"], {"uri": sink.url(f"{ns}/x")},
            net=_net("kafka-creds"),
        ),
    )  # fmt: skip
    ready = _not_ready(kev, "KafkaSource", "orders", ns, "KafkaConnectionFailed")
    assert ready.message is not None and "refused the SASL credentials" in ready.message
    assert "not-the-password" not in ready.message
    # Fixing the Secret makes it Ready: no restart, no crash loop.
    kev.apply(_secret_doc("kafka-creds", ns, sasl_ssl_kafka.secret))
    kev.wait_ready("KafkaSource", "orders", ns, timeout=90)


def test_a_kafka_source_whose_secret_is_missing_is_not_ready(
    kev: Kev, sink: RecordingSink, ns: str, sasl_ssl_kafka: SecuredKafka
) -> None:
    kev.apply(
        kafka_source_doc(
            "orders", ns, sasl_ssl_kafka.bootstrap_servers, ["anything"], {"uri": sink.url(f"{ns}/x")},
            net=_net("nowhere"),
        )
    )  # fmt: skip
    ready = _not_ready(kev, "KafkaSource", "orders", ns, "SecretNotFound")
    assert ready.message == f'Secret "nowhere" in namespace "{ns}" does not exist'


def test_a_kafka_sink_writes_to_a_second_cluster_with_a_client_certificate(
    kev: Kev, ns: str, mtls_kafka: SecuredKafka
) -> None:
    topic = f"{ns}-mtls-sink"
    kev.apply(
        _secret_doc("mtls", ns, mtls_kafka.secret),
        kafka_sink_doc(
            "out", ns, topic, bootstrapServers=[mtls_kafka.bootstrap_servers], numPartitions=1,
            replicationFactor=1, contentMode="binary", auth={"secret": {"ref": {"name": "mtls"}}},
        ),
    )  # fmt: skip
    sink = kev.wait_ready("KafkaSink", "out", ns)
    assert sink.status.address is not None
    headers = {"ce-specversion": "1.0", "ce-id": "m-1", "ce-type": "t", "ce-source": "/s"}
    response = kev.wait_for(
        lambda: (r := kev.http.post(sink.status.address.url, headers=headers, content=b"{}")).status_code == 202
        and r,
        what="the KafkaSink to take the event on its cluster",
    )  # fmt: skip
    assert response.status_code == 202
    record = _run(_read_one(mtls_kafka.connection, topic))
    assert dict(record.headers)["ce_id"] == b"m-1"


def test_a_kafka_sink_on_a_cluster_with_an_untrusted_certificate_is_not_ready(
    kev: Kev, ns: str, sasl_ssl_kafka: SecuredKafka
) -> None:
    untrusted = {**sasl_ssl_kafka.secret, "ca.crt": sasl_ssl_kafka.pki.other_ca}
    kev.apply(
        _secret_doc("creds", ns, untrusted),
        kafka_sink_doc(
            "out", ns, f"{ns}-t", bootstrapServers=[sasl_ssl_kafka.bootstrap_servers],
            auth={"secret": {"ref": {"name": "creds"}}},
        ),
    )  # fmt: skip
    ready = _not_ready(kev, "KafkaSink", "out", ns, "KafkaConnectionFailed")
    assert ready.message is not None and "certificate is not trusted" in ready.message


def test_a_broker_on_its_own_secured_cluster_delivers_replies_and_deletes_its_topic_there(
    kev: Kev, sink: RecordingSink, ns: str, sasl_ssl_kafka: SecuredKafka
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "secured-broker-config", "namespace": ns},
        "data": {
            "bootstrap.servers": sasl_ssl_kafka.bootstrap_servers,
            "auth.secret.ref.name": "broker-creds",
            "default.topic.partitions": "1",
            "default.topic.replication.factor": "1",
        },
    }
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "secured-broker-config"}
    reply = {"ce-specversion": "1.0", "ce-id": "reply-1", "ce-type": "answered", "ce-source": "/responder"}
    sink.program(f"{ns}/responder", Reaction(200, b'{"answer":42}', reply))
    kev.apply(
        _secret_doc("broker-creds", ns, sasl_ssl_kafka.secret),
        config,
        broker_doc("secured", ns, config=ref),
        trigger_doc("ask", ns, "secured", sink.url(f"{ns}/responder"), filter={"attributes": {"type": "asked"}}),
        trigger_doc("answers", ns, "secured", sink.url(f"{ns}/answers"), filter={"attributes": {"type": "answered"}}),
    )  # fmt: skip
    broker = kev.wait_ready("Broker", "secured", ns)
    kev.wait_ready("Trigger", "ask", ns)
    kev.wait_ready("Trigger", "answers", ns)
    # The receiver connects to the Broker's cluster when the Broker appears in the contract: until then it
    # answers 503 with Retry-After, as for any Kafka it cannot reach yet.
    response = kev.wait_for(
        lambda: (r := kev.send(ns, "secured", "on-its-own-cluster", "asked")).status_code != 503 and r,
        what="the receiver to connect to the Broker's cluster",
    )
    assert response.status_code == 202
    [asked] = sink.wait_for(f"{ns}/responder", 1)
    assert asked.event is not None and asked.event.id == "on-its-own-cluster"
    # The reply goes back onto the Broker's topic, on the Broker's cluster, and reaches the other Trigger.
    [answer] = sink.wait_for(f"{ns}/answers", 1)
    assert answer.event is not None and answer.event.id == "reply-1"
    # The Broker's topic is on its cluster, not on keventing's.
    topic = broker.status.annotations[TOPIC_ANNOTATION]

    async def topics(connection: KafkaConnection | str) -> set[str]:
        async with admin_client(connection) as admin:
            return set(await admin.list_topics())

    assert topic in _run(topics(sasl_ssl_kafka.connection))
    assert topic not in _run(topics(kev.stack.bootstrap_servers))
    # Deleted, the Broker's topic goes from its cluster (the topic ledger says which cluster it is on).
    kev.delete("Broker", "secured", ns)
    kev.wait_for(
        lambda: topic not in _run(topics(sasl_ssl_kafka.connection)),
        60,
        "the topic's deletion on its cluster",
    )


def test_kev_get_never_prints_a_secrets_values(kev: Kev, ns: str) -> None:
    kev.apply(_secret_doc("creds", ns, {"user": "u", "password": "hunter2-secret"}))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kev.stack.bootstrap_servers,
        "KEVENTING_INSTANCE": kev.stack.instance,
    }
    for args in (["get", "secret", "creds", "-n", ns, "-o", "yaml"], ["get", "secrets", "-n", ns, "-o", "json"],
                 ["describe", "secret", "creds", "-n", ns]):  # fmt: skip
        result = subprocess.run([*kev_command(), *args], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "password" in result.stdout
        assert (
            "hunter2" not in result.stdout
            and base64.b64encode(b"hunter2-secret").decode() not in result.stdout
        )


def test_services_given_a_wrong_password_wait_and_say_why_without_crashing(
    sasl_ssl_kafka: SecuredKafka, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text(sasl_ssl_kafka.pki.ca)
    stack = Stack.on_free_ports(
        sasl_ssl_kafka.bootstrap_servers,
        tmp_path / "logs",
        "wrong",
        extra_env={
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USER": sasl_ssl_kafka.secret["user"],
            "KAFKA_SASL_PASSWORD": "not-the-password",
            "KAFKA_SSL_CA_FILE": str(ca),
        },
    )
    stack.start_all(("controller", "receiver", "dispatcher", "sources"))
    try:
        for service in stack.services.values():
            assert service.log_path is not None
            log_path = service.log_path
            deadline = time.monotonic() + 60
            while "refused the SASL credentials" not in log_path.read_text():
                assert service.process is not None and service.process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, f"{service.name} never said why: {log_path.read_text()}"
                time.sleep(0.2)
            assert service.process is not None and service.process.poll() is None, f"{service.name} exited"
            assert service.health_url is not None
            with pytest.raises(urllib.error.HTTPError):  # 503 from /readyz: not ready, still serving
                urllib.request.urlopen(service.health_url, timeout=5)
            assert "not-the-password" not in log_path.read_text()
    finally:
        stack.stop_all()
