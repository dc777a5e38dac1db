"""The receiver's answers: every status code of the ingress contract, including Kafka being down."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from conftest import Kev
from helpers import broker_doc

from kev.kafka.embedded import EmbeddedKafka, free_port
from kev.stack import Stack

GOOD = {
    "ce-specversion": "1.0",
    "ce-id": "1",
    "ce-type": "dev.test",
    "ce-source": "/s",
    "content-type": "application/json",
}


@pytest.fixture
def broker_url(kev: Kev, ns: str) -> str:
    kev.apply(broker_doc("default", ns))
    kev.wait_ready("Broker", "default", ns)
    kev.wait_for(lambda: kev.send(ns, "default", "probe").status_code == 202, what="the ingress")
    return kev.broker_url(ns, "default")


def test_valid_binary_event_is_accepted(kev: Kev, broker_url: str) -> None:
    assert kev.http.post(broker_url, headers=GOOD, content=b"{}").status_code == 202


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "ce-type"}, b"{}", "missing required attribute(s): type"),
        ({**GOOD, "ce-specversion": "0.1"}, b"{}", "unsupported specversion"),
        ({**GOOD, "ce-time": "yesterday"}, b"{}", "not an RFC 3339 timestamp"),
        ({"content-type": "application/json"}, b"{}", "no CloudEvent in the request"),
        ({"content-type": "application/cloudevents+json"}, b"{not json", "not valid JSON"),
        (
            {"content-type": "application/cloudevents+json"},
            b'{"id":"1","source":"/s","specversion":"1.0"}',
            "type",
        ),
        ({**GOOD, "ce-Bad_Name": "x"}, b"{}", "invalid attribute name"),
    ],
)
def test_invalid_event_is_rejected_with_400_saying_why(
    kev: Kev, broker_url: str, headers: dict, body: bytes, message: str
) -> None:
    response = kev.http.post(broker_url, headers=headers, content=body)
    assert response.status_code == 400
    assert message in response.text


def test_batched_mode_is_unsupported_media_type(kev: Kev, broker_url: str) -> None:
    response = kev.http.post(
        broker_url, headers={"content-type": "application/cloudevents-batch+json"}, content=b"[]"
    )
    assert response.status_code == 415


def test_unknown_broker_is_404(kev: Kev, broker_url: str, ns: str) -> None:
    response = kev.http.post(kev.broker_url(ns, "nope"), headers=GOOD, content=b"{}")
    assert response.status_code == 404


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_methods_other_than_post_are_405_with_allow(kev: Kev, broker_url: str, method: str) -> None:
    response = kev.http.request(method, broker_url)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, OPTIONS"


def test_options_is_200(kev: Kev, broker_url: str) -> None:
    response = kev.http.options(broker_url)
    assert response.status_code == 200
    assert "POST" in response.headers["allow"]
    assert response.headers["webhook-allowed-origin"] == "*"


def test_event_over_the_limit_is_413(kev: Kev, broker_url: str) -> None:
    response = kev.http.post(broker_url, headers=GOOD, content=b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert "larger than the limit" in response.text
    chunked = kev.http.post(broker_url, headers=GOOD, content=iter([b"x" * 600_000, b"y" * 600_000]))
    assert chunked.status_code == 413


def test_event_at_the_limit_is_accepted(kev: Kev, broker_url: str) -> None:
    assert kev.http.post(broker_url, headers=GOOD, content=b"x" * (1024 * 1024)).status_code == 202


def test_ops_endpoints_answer(kev: Kev) -> None:
    base = kev.stack.ingress_url
    assert kev.http.get(f"{base}/healthz").status_code == 200
    assert kev.http.get(f"{base}/readyz").status_code == 200
    metrics = kev.http.get(f"{base}/metrics").text
    assert "event_count_total" in metrics
    assert "event_dispatch_latencies" in metrics


def test_kafka_down_gives_503_with_retry_after_within_the_bound(tmp_path) -> None:
    """A Kafka of this test's own, stopped under a running receiver: never a hang, never a 202."""
    kafka = EmbeddedKafka(port=free_port(), controller_port=free_port(), data_dir=tmp_path / "kafka")
    kafka.start(timeout=180)
    stack = Stack(
        bootstrap_servers=kafka.bootstrap_servers,
        log_dir=tmp_path / "logs",
        instance=f"outage-{uuid.uuid4().hex[:6]}",
        receiver_port=free_port(),
        dispatcher_port=free_port(),
        controller_port=free_port(),
        extra_env={"KEVENTING_PRODUCE_TIMEOUT_SECONDS": "3", "KEVENTING_DEFAULT_TOPIC_PARTITIONS": "1"},
    )
    try:
        stack.start_all(("controller", "receiver"))
        stack.wait_ready(90)
        kev = Kev(stack)
        kev.apply(broker_doc("b", "outage"))
        kev.wait_ready("Broker", "b", "outage")
        kev.wait_for(lambda: kev.send("outage", "b", "before").status_code == 202, what="the ingress")
        kafka.stop()
        started = time.monotonic()
        response = kev.send("outage", "b", "during")
        elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) > 0
        assert elapsed < 3 + 2, f"answered after {elapsed:.1f} s"
        with httpx.Client(timeout=30) as client:
            assert client.get(f"{stack.ingress_url}/healthz").status_code == 200
    finally:
        stack.stop_all()
        kafka.stop()
