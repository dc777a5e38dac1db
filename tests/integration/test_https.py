"""HTTPS in and out (Knative's transport-encryption), with a test CA (tests/kafka_security.py's, made with
openssl): the receiver serving HTTPS beside HTTP, strict mode refusing HTTP, deliveries to https
subscribers verified against their Destination's CACerts, an untrusted subscriber dead-lettered."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Kev, RecordingSink, topic_ids
from helpers import broker_doc, trigger_doc
from kafka_security import Pki

from kev.kafka.embedded import free_port
from kev.stack import Service, Stack, kev_command
from keventing import naming

pytestmark = pytest.mark.integration

HEADERS = {"ce-specversion": "1.0", "ce-type": "dev.test.tls", "ce-source": "/tests/tls",
           "content-type": "application/json"}  # fmt: skip


@pytest.fixture(scope="module")
def https_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def tls_kev(kafka: str, pki: Pki, https_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kev]:
    """A stack in transport-encryption permissive mode: the receiver serves HTTP and HTTPS (the test CA's
    certificate for 127.0.0.1 and localhost), the controller publishes both addresses."""
    stack = Stack.on_free_ports(
        kafka,
        tmp_path_factory.mktemp("tls-logs"),
        "tls",
        extra_env={
            "KEVENTING_TRANSPORT_ENCRYPTION": "permissive",
            "KEVENTING_TLS_CERT_FILE": str(pki.directory / "broker.crt"),
            "KEVENTING_TLS_KEY_FILE": str(pki.directory / "broker.key"),
            "KEVENTING_RECEIVER_HTTPS_PORT": str(https_port),
            "KEVENTING_INGRESS_HTTPS_URL": f"https://localhost:{https_port}",
            "KEVENTING_INGRESS_CA_FILE": str(pki.directory / "ca.crt"),
            "KEVENTING_DEFAULT_TOPIC_PARTITIONS": "2",
        },
    )
    stack.start_all()
    try:
        stack.wait_ready(timeout=90)
        yield Kev(stack)
    finally:
        stack.stop_all()


@pytest.fixture(scope="module")
def https_sink(pki: Pki) -> Iterator[RecordingSink]:
    """A subscriber serving HTTPS only, with a certificate signed by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.directory / "broker.crt", pki.directory / "broker.key")
    server = RecordingSink(context)
    server.start()
    yield server
    server.stop()


def _trusting(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.directory / "ca.crt"))


def test_a_permissive_broker_publishes_both_addresses_and_accepts_events_over_https_and_http(
    tls_kev: Kev, pki: Pki, https_port: int, ns: str
) -> None:
    kev = tls_kev
    kev.apply(broker_doc("default", ns))
    broker = kev.wait_ready("Broker", "default", ns)
    http_url = f"{kev.stack.ingress_url}/{ns}/default"
    https_url = f"https://localhost:{https_port}/{ns}/default"
    assert broker.status.address is not None and broker.status.address.url == http_url
    assert [(a.name, a.url) for a in broker.status.addresses or []] == [
        ("https", https_url),
        ("http", http_url),
    ]
    assert (broker.status.addresses or [])[0].CACerts == pki.ca

    with httpx.Client(verify=_trusting(pki), timeout=30) as client:
        assert (
            client.post(https_url, headers={**HEADERS, "ce-id": "over-https"}, content=b"{}").status_code
            == 202
        )
    assert kev.send(ns, "default", "over-http").status_code == 202
    ids = topic_ids(kev.settings.kafka_connection, naming.broker_topic(ns, "default"), 2)
    assert sorted(ids) == ["over-http", "over-https"]


def test_the_https_port_is_refused_to_a_client_that_does_not_trust_its_ca(
    tls_kev: Kev, https_port: int, ns: str
) -> None:
    kev = tls_kev
    kev.apply(broker_doc("default", ns))
    kev.wait_ready("Broker", "default", ns)
    with (
        httpx.Client(timeout=30) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.post(
            f"https://localhost:{https_port}/{ns}/default", headers={**HEADERS, "ce-id": "x"}, content=b"{}"
        )


def test_a_strict_receiver_refuses_plain_http_with_a_clear_error_and_accepts_https(
    tls_kev: Kev, pki: Pki, ns: str, tmp_path: Path
) -> None:
    kev = tls_kev
    kev.apply(broker_doc("default", ns))
    kev.wait_ready("Broker", "default", ns)
    # A second receiver of the same stack (the same contract), in strict mode.
    http_port, https_port = free_port(), free_port()
    strict = Service(
        "strict-receiver",
        [*kev_command(), "receiver"],
        f"http://127.0.0.1:{http_port}/readyz",  # the probes stay on HTTP
        {
            "KEVENTING_TRANSPORT_ENCRYPTION": "strict",
            "KEVENTING_RECEIVER_PORT": str(http_port),
            "KEVENTING_RECEIVER_HTTPS_PORT": str(https_port),
        },
    )
    kev.stack.start(strict)
    try:
        kev.stack.wait_ready(timeout=60, names=["strict-receiver"])
        refused = httpx.post(
            f"http://127.0.0.1:{http_port}/{ns}/default",
            headers={**HEADERS, "ce-id": "in-the-clear"},
            content=b"{}",
        )
        assert refused.status_code == 403
        assert "HTTPS only" in refused.text and str(https_port) in refused.text
        with httpx.Client(verify=_trusting(pki), timeout=30) as client:
            url = f"https://127.0.0.1:{https_port}/{ns}/default"
            assert (
                client.post(url, headers={**HEADERS, "ce-id": "strict-https"}, content=b"{}").status_code
                == 202
            )
        # kev event send trusts the CA it is given.
        sent = subprocess.run(
            [*kev_command(), "event", "send", "--to", url, "--id", "from-kev", "--cacert", str(pki.directory / "ca.crt")],
            env={**os.environ, **kev.stack.env()}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stdout + sent.stderr
        ids = topic_ids(kev.settings.kafka_connection, naming.broker_topic(ns, "default"), 2)
        assert sorted(ids) == ["from-kev", "strict-https"]  # partitions: no order between requests
    finally:
        kev.stack.stop("strict-receiver")


def test_a_strict_receiver_without_a_certificate_refuses_to_start(tls_kev: Kev) -> None:
    env = {**tls_kev.stack.env(), "KEVENTING_TRANSPORT_ENCRYPTION": "strict", "KEVENTING_TLS_CERT_FILE": ""}
    result = subprocess.run([*kev_command(), "receiver"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "KEVENTING_TLS_CERT_FILE" in result.stderr


def test_an_https_subscriber_trusted_through_its_cacerts_gets_the_event(
    tls_kev: Kev, pki: Pki, https_sink: RecordingSink, ns: str
) -> None:
    kev = tls_kev
    trigger = trigger_doc("secure", ns, "default", https_sink.url(f"{ns}/secure"))
    trigger["spec"]["subscriber"]["CACerts"] = pki.ca
    kev.apply(broker_doc("default", ns), trigger)
    kev.wait_ready("Trigger", "secure", ns)
    assert kev.send(ns, "default", "to-https").status_code == 202
    [received] = https_sink.wait_for(f"{ns}/secure", 1)
    assert received.event is not None and received.event.id == "to-https"


def test_a_subscriber_with_an_untrusted_certificate_is_retried_then_dead_lettered_never_sent_in_the_clear(
    tls_kev: Kev, pki: Pki, https_sink: RecordingSink, sink: RecordingSink, ns: str
) -> None:
    kev = tls_kev
    # Its certificate is the test CA's; the Destination trusts another CA (and the system store does not
    # know the test CA): every attempt fails its TLS handshake.
    trigger = trigger_doc(
        "untrusted", ns, "default", https_sink.url(f"{ns}/untrusted"),
        delivery={"retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT0.1S",
                  "deadLetterSink": {"uri": sink.url(f"{ns}/dead-letters")}},
    )  # fmt: skip
    trigger["spec"]["subscriber"]["CACerts"] = pki.other_ca
    kev.apply(broker_doc("default", ns), trigger)
    kev.wait_ready("Trigger", "untrusted", ns)
    assert kev.send(ns, "default", "untrusted-1").status_code == 202
    [letter] = sink.wait_for(f"{ns}/dead-letters", 1)
    assert letter.event is not None and letter.event.id == "untrusted-1"
    assert letter.event.attributes["knativeerrordest"] == https_sink.url(f"{ns}/untrusted")
    assert letter.event.attributes["knativeerrorcode"] == "500"
    error = base64.b64decode(letter.event.attributes["knativeerrordata"]).decode()
    assert "certificate" in error.lower()
    # No request ever reached the subscriber: the handshake failed before anything was sent.
    assert https_sink.requests(f"{ns}/untrusted") == []


def test_an_event_transform_calls_its_https_sink_only_when_its_certificate_is_trusted(
    tls_kev: Kev, pki: Pki, https_sink: RecordingSink, ns: str
) -> None:
    kev = tls_kev

    def transform(name: str, ca: str) -> dict:
        return {"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "EventTransform",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"jsonata": {"expression": "$"},
                         "sink": {"uri": https_sink.url(f"{ns}/{name}"), "CACerts": ca}}}  # fmt: skip

    kev.apply(transform("trusted", pki.ca), transform("untrusted", pki.other_ca))
    for name, expected in (("trusted", 202), ("untrusted", 502)):
        found = kev.wait_ready("EventTransform", name, ns)
        assert found.status.address is not None and found.status.address.url
        answer = kev.http.post(found.status.address.url, headers={**HEADERS, "ce-id": name}, content=b"{}")
        assert answer.status_code == expected, answer.text
    [forwarded] = https_sink.wait_for(f"{ns}/trusted", 1)
    assert forwarded.event is not None and forwarded.event.id == "trusted"
    assert https_sink.requests(f"{ns}/untrusted") == []
