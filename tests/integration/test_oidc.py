"""OIDC sender identity (Knative's authentication-oidc) against a real issuer the test runs with its own
keys (tests/oidc_issuer.py): the receiver accepts only a valid token for the resource's audience, nothing
else reaches Kafka; rotated keys are picked up; the dispatcher sends tokens for its subscribers' audience."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from conftest import Kev, Reaction, Received, RecordingSink
from helpers import (
    broker_doc,
    kafka_channel_doc,
    ping_source_doc,
    ref,
    sink_ref,
    subscription_doc,
    trigger_doc,
)
from oidc_issuer import JwksIssuer, SigningKey

from kev.stack import ALL_SERVICES, Stack
from keventing import naming
from keventing.kafka.client import make_consumer
from keventing.kafka.connection import KafkaConnection

pytestmark = pytest.mark.integration

HEADERS = {"ce-specversion": "1.0", "ce-type": "dev.test.oidc", "ce-source": "/tests/oidc",
           "content-type": "application/json"}  # fmt: skip

# The dispatcher's token command: signs a token for the audience it is given with the issuer's key.
TOKEN_COMMAND = """
import json, sys, time, jwt
config = json.load(open(sys.argv[1]))
now = int(time.time())
claims = {"iss": config["issuer"], "aud": sys.argv[2], "sub": "system:serviceaccount:tests:dispatcher",
          "iat": now, "exp": now + 600}
print(jwt.encode(claims, open(config["key_file"]).read(), algorithm="RS256", headers={"kid": config["kid"]}))
"""


@pytest.fixture(scope="module")
def issuer() -> Iterator[JwksIssuer]:
    server = JwksIssuer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oidc_kev(kafka: str, issuer: JwksIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kev]:
    directory = tmp_path_factory.mktemp("oidc")
    (directory / "key.pem").write_bytes(issuer.key.pem)
    config = {"issuer": issuer.url, "kid": issuer.key.kid, "key_file": str(directory / "key.pem")}
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "issue_token.py").write_text(TOKEN_COMMAND)
    stack = Stack.on_free_ports(
        kafka,
        tmp_path_factory.mktemp("oidc-logs"),
        "oidc",
        extra_env={
            "KEVENTING_AUTHENTICATION_OIDC": "enabled",
            "KEVENTING_OIDC_ISSUER": issuer.url,
            "KEVENTING_OIDC_JWKS_REFRESH_SECONDS": "1",
            "KEVENTING_OIDC_TOKEN_COMMAND": f"{sys.executable} {directory / 'issue_token.py'} {directory / 'config.json'}",
            "KEVENTING_DEFAULT_TOPIC_PARTITIONS": "2",
            "KEVENTING_SOURCES_CLOCK": "manual",
        },
    )
    stack.start_all(ALL_SERVICES)
    try:
        stack.wait_ready(timeout=90)
        yield Kev(stack)
    finally:
        stack.stop_all()


def _audience(ns: str) -> str:
    return f"eventing.knative.dev/broker/{ns}/default"


def _post(kev: Kev, ns: str, event_id: str, authorization: str | None) -> httpx.Response:
    headers = {**HEADERS, "ce-id": event_id}
    if authorization is not None:
        headers["authorization"] = authorization
    return kev.http.post(kev.broker_url(ns, "default"), headers=headers, content=b"{}")


def _ids_on(connection: KafkaConnection, topic: str, expected: int) -> list[str]:
    """The ce_id of every record on ``topic``, once ``expected`` arrived (and a second more) or at most 20 s."""

    async def read() -> list[str]:
        consumer = make_consumer(connection, None, auto_offset_reset="earliest")
        consumer.subscribe([topic])
        await consumer.start()
        ids: list[str] = []
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                ids.extend(dict(r.headers)["ce_id"].decode() for rs in batch.values() for r in rs)
                if len(ids) >= expected:
                    await asyncio.sleep(1.0)
                    batch = await consumer.getmany(timeout_ms=500)
                    ids.extend(dict(r.headers)["ce_id"].decode() for rs in batch.values() for r in rs)
                    break
            return ids
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_a_broker_publishes_its_audience_and_accepts_a_valid_token(
    oidc_kev: Kev, issuer: JwksIssuer, ns: str
) -> None:
    kev = oidc_kev
    kev.apply(broker_doc("default", ns))
    broker = kev.wait_ready("Broker", "default", ns)
    assert broker.status.address is not None and broker.status.address.audience == _audience(ns)
    answer = _post(kev, ns, "valid", f"Bearer {issuer.token(_audience(ns))}")
    assert answer.status_code == 202, answer.text
    assert _ids_on(kev.settings.kafka_connection, naming.broker_topic(ns, "default"), 1) == ["valid"]


def test_every_invalid_token_is_401_with_a_reason_and_nothing_reaches_kafka(
    oidc_kev: Kev, issuer: JwksIssuer, ns: str
) -> None:
    kev = oidc_kev
    kev.apply(broker_doc("default", ns))
    kev.wait_ready("Broker", "default", ns)
    audience = _audience(ns)
    now = int(time.time())
    stranger = SigningKey()  # not published by the issuer
    none_token = jwt.encode({"iss": issuer.url, "aud": audience, "exp": now + 600}, None, algorithm="none")
    hmac_token = jwt.encode(
        {"iss": issuer.url, "aud": audience, "exp": now + 600},
        "a-shared-secret-of-32-bytes-long!",
        algorithm="HS256",
    )
    forged = jwt.encode(
        {"iss": issuer.url, "aud": audience, "exp": now + 600},
        stranger.private,
        algorithm="RS256",
        headers={"kid": issuer.key.kid},  # the issuer's kid, someone else's signature
    )
    cases = {
        "no-token": (None, "no bearer token"),
        "not-bearer": ("Basic dXNlcjpwYXNz", "not 'Bearer <JWT>'"),
        "garbage": ("Bearer not.a.jwt", "not a JWT"),
        "expired": (f"Bearer {issuer.token(audience, exp=now - 3600, iat=now - 7200)}", "expired"),
        "wrong-audience": (
            f"Bearer {issuer.token('eventing.knative.dev/broker/other/default')}",
            "not for audience",
        ),
        "wrong-issuer": (
            f"Bearer {issuer.token(audience, iss='https://elsewhere.example')}",
            "not from issuer",
        ),
        "bad-signature": (f"Bearer {forged}", "signature"),
        "unknown-key": (f"Bearer {issuer.token(audience, key=stranger)}", "does not publish"),
        "alg-none": (f"Bearer {none_token}", "'none' is not accepted"),
        "alg-hs256": (f"Bearer {hmac_token}", "'HS256' is not accepted"),
    }
    for event_id, (authorization, reason) in cases.items():
        answer = _post(kev, ns, event_id, authorization)
        assert answer.status_code == 401, (event_id, answer.status_code, answer.text)
        assert reason in answer.text, (event_id, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert _post(kev, ns, "valid-after", f"Bearer {issuer.token(audience)}").status_code == 202
    # Only the valid event is on the Broker's topic.
    assert _ids_on(kev.settings.kafka_connection, naming.broker_topic(ns, "default"), 1) == ["valid-after"]
    # No token in any log line.
    logs = "".join(Path(s.log_path).read_text() for s in kev.stack.services.values() if s.log_path)
    assert forged not in logs and issuer.token(audience).split(".")[1][:20] not in logs


def test_a_rotated_signing_key_is_picked_up_without_a_restart(
    oidc_kev: Kev, issuer: JwksIssuer, ns: str
) -> None:
    kev = oidc_kev
    kev.apply(broker_doc("default", ns))
    kev.wait_ready("Broker", "default", ns)
    audience = _audience(ns)
    assert (
        _post(kev, ns, "before-rotation", f"Bearer {issuer.token(audience, key=issuer.keys[0])}").status_code
        == 202
    )
    fetched = issuer.jwks_requests
    new_key = issuer.rotate()
    time.sleep(1.2)  # KEVENTING_OIDC_JWKS_REFRESH_SECONDS=1: the receiver may fetch the keys again
    answer = _post(kev, ns, "after-rotation", f"Bearer {issuer.token(audience, key=new_key)}")
    assert answer.status_code == 202, answer.text
    assert issuer.jwks_requests == fetched + 1
    # The old key is still published: its tokens stay valid until they expire.
    assert (
        _post(kev, ns, "old-key", f"Bearer {issuer.token(audience, key=issuer.keys[0])}").status_code == 202
    )
    ids = _ids_on(kev.settings.kafka_connection, naming.broker_topic(ns, "default"), 3)
    assert sorted(ids) == ["after-rotation", "before-rotation", "old-key"]


def test_the_dispatcher_sends_a_token_for_the_subscribers_audience(
    oidc_kev: Kev, issuer: JwksIssuer, sink: RecordingSink, ns: str
) -> None:
    kev = oidc_kev
    trigger = trigger_doc("display", ns, "default", sink.url(f"{ns}/display"))
    trigger["spec"]["subscriber"]["audience"] = "my-subscriber"
    kev.apply(broker_doc("default", ns), trigger)
    kev.wait_ready("Trigger", "display", ns)
    assert _post(kev, ns, "to-sub", f"Bearer {issuer.token(_audience(ns))}").status_code == 202
    [received] = sink.wait_for(f"{ns}/display", 1)
    scheme, _, token = received.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    public = jwt.PyJWK(issuer.keys[0].jwk)
    claims = jwt.decode(token, public, algorithms=["RS256"], audience="my-subscriber", issuer=issuer.url)
    assert claims["sub"] == "system:serviceaccount:tests:dispatcher"


def test_a_trigger_to_another_broker_is_delivered_with_that_brokers_audience(
    oidc_kev: Kev, issuer: JwksIssuer, sink: RecordingSink, ns: str
) -> None:
    kev = oidc_kev
    forward = trigger_doc("forward", ns, "default", "")
    forward["spec"]["subscriber"] = {
        "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "second"}
    }
    kev.apply(
        broker_doc("default", ns),
        broker_doc("second", ns),
        forward,
        trigger_doc("display", ns, "second", sink.url(f"{ns}/second")),
    )
    kev.wait_ready("Trigger", "forward", ns)
    kev.wait_ready("Trigger", "display", ns)
    assert _post(kev, ns, "hop", f"Bearer {issuer.token(_audience(ns))}").status_code == 202
    # The receiver accepted the dispatcher's token for eventing.knative.dev/broker/<ns>/second.
    [received] = sink.wait_for(f"{ns}/second", 1)
    assert received.event is not None and received.event.id == "hop"


def test_a_ping_source_sends_to_a_broker_with_a_token_for_its_audience(
    oidc_kev: Kev, sink: RecordingSink, ns: str
) -> None:
    kev = oidc_kev
    kev.apply(
        broker_doc("default", ns),
        trigger_doc("display", ns, "default", sink.url(f"{ns}/pinged")),
        ping_source_doc("beat", ns, sink_ref("Broker", "default"), schedule="* * * * *"),
    )
    kev.wait_ready("Trigger", "display", ns)
    source = kev.wait_ready("PingSource", "beat", ns)
    assert source.status.sinkAudience == _audience(ns)
    port = kev.stack.sources_port
    scheduled = lambda: any(  # noqa: E731
        p["id"] == f"PingSource/{ns}/beat"
        for p in kev.http.get(f"http://127.0.0.1:{port}/sources").json()["pings"]
    )
    kev.wait_for(scheduled, timeout=30, what="the PingSource to be scheduled")
    kev.http.post(f"http://127.0.0.1:{port}/clock", json={"now": "2030-01-01T00:00:30+00:00"})
    assert kev.http.post(f"http://127.0.0.1:{port}/clock", json={"advance": 60}).json()["fired"] == 1
    [received] = sink.wait_for(f"{ns}/pinged", 1)
    assert received.event is not None and received.event.type == "dev.knative.sources.ping"


def test_a_subscriptions_reply_reaches_a_broker_with_a_token_for_its_audience(
    oidc_kev: Kev, issuer: JwksIssuer, sink: RecordingSink, ns: str
) -> None:
    kev = oidc_kev

    def reply(received: Received) -> Reaction:
        assert received.event is not None
        headers = {**HEADERS, "ce-id": f"reply-{received.event.id}", "ce-type": "dev.test.reply"}
        return Reaction(200, b"{}", headers)

    sink.respond_with(f"{ns}/echo", reply)
    kev.apply(
        broker_doc("default", ns),
        trigger_doc("display", ns, "default", sink.url(f"{ns}/replied")),
        kafka_channel_doc("orders", ns),
        subscription_doc(
            "echo", ns, "orders", subscriber={"uri": sink.url(f"{ns}/echo")}, reply=ref("Broker", "default")
        ),
    )
    kev.wait_ready("Trigger", "display", ns)
    channel = kev.wait_ready("KafkaChannel", "orders", ns)
    kev.wait_ready("Subscription", "echo", ns)
    assert channel.status.address is not None
    audience = channel.status.address.audience
    assert audience == f"messaging.knative.dev/kafkachannel/{ns}/orders"
    headers = {**HEADERS, "ce-id": "order-1", "authorization": f"Bearer {issuer.token(audience)}"}
    assert kev.http.post(channel.status.address.url or "", headers=headers, content=b"{}").status_code == 202
    [received] = sink.wait_for(f"{ns}/replied", 1)
    assert received.event is not None and received.event.id == "reply-order-1"
