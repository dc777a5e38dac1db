"""Kafka connections secured with TLS and SASL, on real secured embedded Kafkas (tests/kafka_security.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Kev, RecordingSink
from helpers import broker_doc, trigger_doc
from kafka_security import SecuredKafka

from kev.kafka.embedded import free_port
from kev.stack import Stack


@pytest.fixture(scope="module")
def sasl_ssl_kev(sasl_ssl_kafka: SecuredKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kev]:
    """A keventing stack whose own connection (every client of every service) is SASL_SSL."""
    ca = tmp_path_factory.mktemp("sasl-ssl-ca") / "ca.crt"
    ca.write_text(sasl_ssl_kafka.pki.ca)
    secret = sasl_ssl_kafka.secret
    stack = Stack(
        bootstrap_servers=sasl_ssl_kafka.bootstrap_servers,
        log_dir=tmp_path_factory.mktemp("sasl-ssl-logs"),
        instance=f"sec-{uuid.uuid4().hex[:8]}",
        receiver_port=free_port(),
        dispatcher_port=free_port(),
        controller_port=free_port(),
        sources_port=free_port(),
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
    # Never a credential in a log line.
    assert "keventing-secret" not in _logs(kev)
