"""The receiver under hostile or careless input: bounded headers, read timeouts, a concurrency limit, records
Kafka would refuse, attributes the dispatcher could not send, and SIGTERM whatever the receiver is doing."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
from conftest import Kev, topic_ids
from helpers import broker_doc

from kev.kafka.embedded import free_port
from kev.stack import Stack
from keventing.kafka.client import TopicSpec, admin_client, ensure_topic

GOOD = {
    "ce-specversion": "1.0",
    "ce-id": "1",
    "ce-type": "dev.test",
    "ce-source": "/s",
    "content-type": "application/json",
}
HEADER_TIMEOUT = 10.0  # the receiver's default KEVENTING_HEADER_TIMEOUT_SECONDS


@pytest.fixture
def broker_url(kev: Kev, ns: str) -> str:
    kev.apply(broker_doc("default", ns))
    kev.wait_ready("Broker", "default", ns)
    kev.wait_for(lambda: kev.send(ns, "default", "probe").status_code == 202, what="the ingress")
    return kev.broker_url(ns, "default")


def _port(url: str) -> int:
    return httpx.URL(url).port or 80


def _path(url: str) -> str:
    return httpx.URL(url).path


def _connect(url: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", _port(url)), timeout=30)


def _read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or a complete response by length)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and len(body) >= int(value):
                return received
    return received


def _raw(url: str, request: bytes) -> bytes:
    """Send ``request`` as is (the server may answer and close before it is all sent) and read the answer."""
    with _connect(url) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_response(sock)


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _post_head(url: str, headers: dict[str, str], length: int) -> bytes:
    lines = [f"POST {_path(url)} HTTP/1.1", "Host: localhost", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ------------------------------------------------------------------------------------------ headers


def test_more_than_100_headers_is_431_saying_so(broker_url: str) -> None:
    extra = {f"x-h{i}": "v" for i in range(101)}
    response = _raw(broker_url, _post_head(broker_url, {**GOOD, **extra}, 2) + b"{}")
    assert _status(response) == 431
    assert b"too many request headers: at most 100" in response


def test_headers_over_64_kib_are_431_without_reading_them_all(broker_url: str) -> None:
    response = _raw(broker_url, _post_head(broker_url, {**GOOD, "ce-big": "x" * 70_000}, 2) + b"{}")
    assert _status(response) == 431
    assert b"larger than the limit of 65536 bytes" in response
    # One 32 MiB header: refused as soon as the first 64 KiB are in, long before the rest is sent.
    with _connect(broker_url) as sock:
        sock.sendall(f"POST {_path(broker_url)} HTTP/1.1\r\nHost: localhost\r\nce-huge: ".encode())
        sent = 0
        try:
            while sent < 32 * 1024 * 1024:
                sock.sendall(b"x" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < 32 * 1024 * 1024
        answer = _read_response(sock)
    assert answer == b"" or _status(answer) == 431


def test_headers_at_the_limit_are_accepted(kev: Kev, broker_url: str) -> None:
    response = kev.http.post(broker_url, headers={**GOOD, "ce-big": "x" * 60_000}, content=b"{}")
    assert response.status_code == 202


def test_two_different_content_lengths_are_400_saying_why(broker_url: str) -> None:
    head = _post_head(broker_url, GOOD, 2).replace(b"\r\n\r\n", b"\r\nContent-Length: 40\r\n\r\n")
    response = _raw(broker_url, head + b"{}" + b"x" * 38)
    assert _status(response) == 400
    assert b"Content-Length" in response


def test_a_partial_header_is_closed_within_the_header_timeout(broker_url: str) -> None:
    with _connect(broker_url) as sock:
        started = time.monotonic()
        sock.sendall(f"POST {_path(broker_url)} HTTP/1.1\r\nHost: localhost\r\nce-slow: ".encode())
        response = _read_response(sock)
        elapsed = time.monotonic() - started
    assert _status(response) == 408
    assert b"did not arrive within 10 seconds" in response
    assert elapsed < HEADER_TIMEOUT + 5, f"closed after {elapsed:.1f} s"


def test_an_idle_connection_is_closed_within_the_header_timeout(broker_url: str) -> None:
    with _connect(broker_url) as sock:
        started = time.monotonic()
        _read_response(sock)
        elapsed = time.monotonic() - started
    assert elapsed < HEADER_TIMEOUT + 5, f"closed after {elapsed:.1f} s"


# ------------------------------------------------------------------------------------------ attributes


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"datacontenttype": "application/json\r\nx-injected: 1"}, "attribute datacontenttype contains"),
        ({"datacontenttype": "application/json\x00"}, "attribute datacontenttype contains"),
        ({"subject": "a\nb"}, "attribute subject contains"),
        ({"myext": "tab\there"}, "attribute myext contains"),
        ({"myext\n": "x"}, "invalid attribute name 'myext\\n'"),
        ({"MyExt": "x"}, "invalid attribute name 'MyExt'"),
    ],
)
def test_structured_attributes_the_dispatcher_could_not_send_are_400(
    kev: Kev, broker_url: str, document: dict[str, str], message: str
) -> None:
    event = {"specversion": "1.0", "id": "1", "type": "dev.test", "source": "/s", **document}
    response = kev.http.post(
        broker_url, headers={"content-type": "application/cloudevents+json"}, content=orjson.dumps(event)
    )
    assert response.status_code == 400
    assert message in response.text


def test_binary_attribute_with_an_encoded_newline_is_400(kev: Kev, broker_url: str) -> None:
    response = kev.http.post(broker_url, headers={**GOOD, "ce-myext": "a%0D%0Ab"}, content=b"{}")
    assert response.status_code == 400
    assert "attribute myext contains" in response.text


def test_structured_data_nested_too_deep_is_400_not_500(kev: Kev, broker_url: str) -> None:
    # 300 levels: past orjson's encoder limit (255), so this was a 500; written by hand for the same reason.
    data = b"[" * 300 + b"1" + b"]" * 300
    event = b'{"specversion":"1.0","id":"1","type":"dev.test","source":"/s","data":' + data + b"}"
    response = kev.http.post(
        broker_url, headers={"content-type": "application/cloudevents+json"}, content=event
    )
    assert response.status_code == 400
    assert "nested more than 64 levels" in response.text


# ------------------------------------------------------------------------------------------ own receiver


@pytest.fixture
def limited(kafka: str, tmp_path) -> Iterator[tuple[Stack, str]]:
    """A controller and receiver of their own: small limits, and a receiver the test may SIGTERM."""
    stack = Stack(
        bootstrap_servers=kafka,
        log_dir=tmp_path / "logs",
        instance=f"limits-{uuid.uuid4().hex[:6]}",
        receiver_port=free_port(),
        dispatcher_port=free_port(),
        controller_port=free_port(),
        extra_env={
            "KEVENTING_DEFAULT_TOPIC_PARTITIONS": "1",
            # Headers up to 4 MiB reach the Kafka-record check; the producer accepts about 2 MiB.
            "KEVENTING_MAX_HEADER_BYTES": str(4 * 1024 * 1024),
            "KEVENTING_MAX_CONCURRENCY": "4",
            "KEVENTING_BODY_TIMEOUT_SECONDS": "2",
        },
    )
    try:
        stack.start_all(("controller", "receiver"))
        stack.wait_ready(90)
        kev = Kev(stack)
        kev.apply(broker_doc("b", "limits"))
        kev.wait_ready("Broker", "b", "limits")
        kev.wait_for(lambda: kev.send("limits", "b", "probe").status_code == 202, what="the ingress")
        yield stack, kev.broker_url("limits", "b")
    finally:
        stack.stop_all()


def test_a_record_kafka_would_refuse_is_413_and_later_events_are_accepted(
    limited: tuple[Stack, str],
) -> None:
    _, url = limited
    with httpx.Client(timeout=30) as client:
        started = time.monotonic()
        response = client.post(url, headers={**GOOD, "ce-big": "x" * (3 * 1024 * 1024)}, content=b"{}")
        assert response.status_code == 413, response.text
        assert "larger than the limit" in response.text
        assert time.monotonic() - started < 10
        later = [client.post(url, headers={**GOOD, "ce-id": str(i)}, content=b"{}") for i in range(20)]
    assert [r.status_code for r in later] == [202] * 20


def test_over_the_concurrency_limit_is_503_with_retry_after(limited: tuple[Stack, str]) -> None:
    _, url = limited
    held = [_connect(url) for _ in range(4)]
    try:
        response = _raw(url, _post_head(url, GOOD, 2) + b"{}")
        assert _status(response) == 503
        assert b"retry-after: 5" in response.lower()
    finally:
        for sock in held:
            sock.close()
    with httpx.Client(timeout=30) as client:
        Kev(limited[0]).wait_for(
            lambda: client.post(url, headers=GOOD, content=b"{}").status_code == 202, what="the limit to free"
        )


def test_a_body_that_stops_arriving_is_408_within_the_body_timeout(limited: tuple[Stack, str]) -> None:
    _, url = limited
    with _connect(url) as sock:
        started = time.monotonic()
        sock.sendall(_post_head(url, GOOD, 100) + b'{"partial":')
        response = _read_response(sock)
        elapsed = time.monotonic() - started
    assert _status(response) == 408
    assert elapsed < 2 + 3, f"answered after {elapsed:.1f} s"


def test_sigterm_stops_the_receiver_within_seconds_mid_upload(limited: tuple[Stack, str]) -> None:
    stack, url = limited
    process = stack.services["receiver"].process
    assert process is not None
    body_upload = _connect(url)
    body_upload.sendall(_post_head(url, GOOD, 10 * 1024 * 1024) + b"x" * 65536)
    header_upload = _connect(url)
    header_upload.sendall(f"POST {_path(url)} HTTP/1.1\r\nce-big: ".encode() + b"x" * 65536)
    try:
        started = time.monotonic()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("the receiver did not stop within 15 s of SIGTERM")
        elapsed = time.monotonic() - started
    finally:
        body_upload.close()
        header_upload.close()
    assert elapsed < 10, f"stopped after {elapsed:.1f} s"


def _small_topic_broker(kev: Kev, ns: str, kafka: str, max_message_bytes: int) -> str:
    """Broker "default" of ``ns`` on a topic made outside keventing with a small max.message.bytes."""
    topic = f"small-{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        async with admin_client(kafka) as admin:
            config = {"max.message.bytes": str(max_message_bytes)}
            await ensure_topic(admin, TopicSpec(topic, 1, 1, config))

    asyncio.run(create())
    broker = broker_doc("default", ns)
    broker["metadata"]["annotations"] = {"kafka.eventing.knative.dev/external.topic": topic}
    kev.apply(broker)
    kev.wait_ready("Broker", "default", ns)
    return topic


def test_an_event_kafka_refuses_as_too_large_is_a_413_and_later_events_on_the_partition_still_land(
    kev: Kev, ns: str, kafka: str
) -> None:
    # A topic made outside keventing with a small max.message.bytes (an external-topic Broker's): Kafka's
    # limit is below the receiver's. The refused record must not leave the producer's sequence broken for
    # the partition (finding 6: later events answered 503 OutOfOrderSequenceNumber).
    topic = _small_topic_broker(kev, ns, kafka, 2000)
    big = kev.send(ns, "default", "big-1", data=b'"' + b"x" * 20_000 + b'"')
    assert big.status_code == 413
    assert f"Kafka refused the event as too large for topic {topic}" in big.text
    codes = [kev.send(ns, "default", f"small-{i}").status_code for i in range(100)]
    assert codes == [202] * 100


def test_an_event_kafka_refuses_amid_concurrent_small_ones_fails_alone(kev: Kev, ns: str, kafka: str) -> None:
    # The receiver batches concurrent records per partition: Kafka refusing one record of a batch must be a
    # 413 for that event only, and every small event sent at the same moment must be stored (202, on Kafka).
    topic = _small_topic_broker(kev, ns, kafka, 4000)
    url = kev.broker_url(ns, "default")

    async def burst(round_: int) -> dict[str, int]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:

            async def post(event_id: str, data: bytes) -> tuple[str, int]:
                headers = {**GOOD, "ce-id": event_id}
                return event_id, (await client.post(url, headers=headers, content=data)).status_code

            sends = [post(f"s-{round_}-{i}", b"{}") for i in range(40)]
            sends.insert(20, post(f"big-{round_}", b'"' + b"x" * 20_000 + b'"'))
            return dict(await asyncio.gather(*sends))

    answers: dict[str, int] = {}
    for round_ in range(5):
        answers |= asyncio.run(burst(round_))
    big = {event_id: code for event_id, code in answers.items() if event_id.startswith("big-")}
    small = {event_id: code for event_id, code in answers.items() if event_id.startswith("s-")}
    assert set(big.values()) == {413}, big
    assert sorted(code for code in small.values() if code != 202) == [], small
    on_kafka = topic_ids(kev.settings.kafka_connection, topic, len(small))
    assert sorted(on_kafka) == sorted(small)
