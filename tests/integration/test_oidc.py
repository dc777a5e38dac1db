"""OIDC sender identity (Knative's authentication-oidc) against a real issuer the test runs with its own
keys (tests/oidc_issuer.py): the receiver accepts only a valid token for the resource's audience, nothing
else reaches Kafka; rotated keys are picked up; the dispatcher sends tokens for its subscribers' audience."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from conftest import Kev, Reaction, Received, RecordingSink, topic_ids
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

from kev.stack import ALL_SERVICES, Stack, kev_command
from keventing import naming

pytestmark = pytest.mark.integration

HEADERS = {"ce-specversion": "1.0", "ce-type": "dev.test.oidc", "ce-source": "/tests/oidc",
           "content-type": "application/json"}  # fmt: skip

# The dispatcher's token command: signs a token for the audience it is given with the issuer's key.
TOKEN_COMMAND = """
import json, sys, time, jwt
config = json.load(open(sys.argv[1]))
now = int(time.time())
parts = sys.argv[2].split("/")
namespace = parts[2] if len(parts) == 4 else "tests"  # a Knative audience names the namespace
claims = {"iss": config["issuer"], "aud": sys.argv[2], "sub": f"system:serviceaccount:{namespace}:dispatcher",
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


def test_a_broker_publishes_its_audience_and_accepts_a_valid_token(
    oidc_kev: Kev, issuer: JwksIssuer, ns: str, tmp_path: Path
) -> None:
    kev = oidc_kev
    kev.apply(broker_doc("default", ns))
    broker = kev.wait_ready("Broker", "default", ns)
    assert broker.status.address is not None and broker.status.address.audience == _audience(ns)
    answer = _post(kev, ns, "valid", f"Bearer {issuer.token(_audience(ns))}")
    assert answer.status_code == 202, answer.text
    # kev event send sends a token from a file.
    token_file = tmp_path / "token"
    token_file.write_text(issuer.token(_audience(ns)))
    env = {**os.environ, **kev.stack.env()}
    sent = subprocess.run(
        [*kev_command(), "event", "send", "-b", "default", "-n", ns, "--id", "from-kev", "--token-file", str(token_file)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr
    unauthenticated = subprocess.run(
        [*kev_command(), "event", "send", "-b", "default", "-n", ns, "--id", "no-token"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unauthenticated.returncode == 1 and "401" in unauthenticated.stdout
    # Records of separate requests may be on different partitions: their order is not the topic's.
    assert sorted(topic_ids(kev.settings.kafka_connection, naming.broker_topic(ns, "default"), 2)) == [
        "from-kev",
        "valid",
    ]


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
    assert topic_ids(kev.settings.kafka_connection, naming.broker_topic(ns, "default"), 1) == ["valid-after"]
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
    ids = topic_ids(kev.settings.kafka_connection, naming.broker_topic(ns, "default"), 3)
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


# ------------------------------------------------------------------------------------ EventPolicy


def _policy(name: str, ns: str, subs: list[str], to: list[dict] | None = None, **spec: object) -> dict:
    body: dict = {"from": [{"sub": s} for s in subs], **spec}
    if to is not None:
        body["to"] = to
    return {"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "EventPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": body}  # fmt: skip


def _as(issuer: JwksIssuer, ns: str, account: str, audience_ns: str | None = None) -> str:
    audience = _audience(audience_ns or ns)
    return f"Bearer {issuer.token(audience, sub=f'system:serviceaccount:{ns}:{account}')}"


BROKER_REF = {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}}


def test_an_event_policy_allows_its_senders_and_refuses_every_other_with_403(
    oidc_kev: Kev, issuer: JwksIssuer, ns: str
) -> None:
    kev = oidc_kev
    kev.apply(
        broker_doc("default", ns),
        _policy("only-orders", ns, [f"system:serviceaccount:{ns}:orders"], [BROKER_REF]),
    )

    def applied() -> object:
        broker = kev.get("Broker", "default", ns)
        return broker if broker is not None and broker.status.policies else None

    broker = kev.wait_for(applied, timeout=30, what="the EventPolicy to apply to the Broker")
    assert broker.status.policies == [{"apiVersion": "eventing.knative.dev/v1alpha1", "name": "only-orders"}]
    condition = broker.status.condition("EventPoliciesReady")
    assert condition is not None and condition.status == "True"
    policy = kev.get("EventPolicy", "only-orders", ns)
    assert (
        policy is not None
        and policy.status.ready
        and policy.status.from_ == [f"system:serviceaccount:{ns}:orders"]
    )

    assert _post(kev, ns, "from-orders", _as(issuer, ns, "orders")).status_code == 202
    # Same namespace (the default mode would allow it), but not in the policy.
    refused = _post(kev, ns, "from-sender", _as(issuer, ns, "sender"))
    assert refused.status_code == 403
    assert (
        f"system:serviceaccount:{ns}:sender is not allowed" in refused.text and "only-orders" in refused.text
    )
    assert topic_ids(kev.settings.kafka_connection, naming.broker_topic(ns, "default"), 1) == ["from-orders"]


def test_a_policy_change_applies_within_seconds_and_deleting_it_restores_the_default_mode(
    oidc_kev: Kev, issuer: JwksIssuer, ns: str
) -> None:
    kev = oidc_kev
    kev.apply(broker_doc("default", ns), _policy("p", ns, [f"system:serviceaccount:{ns}:first"]))
    kev.wait_for(lambda: _post(kev, ns, "first-1", _as(issuer, ns, "first")).status_code == 202, 30, "policy")
    assert _post(kev, ns, "batch-1", _as(issuer, ns, "batch-7")).status_code == 403
    started = time.monotonic()
    kev.apply(_policy("p", ns, [f"system:serviceaccount:{ns}:batch-*"]))
    kev.wait_for(
        lambda: _post(kev, ns, "batch-2", _as(issuer, ns, "batch-7")).status_code == 202, 10, "change"
    )
    assert time.monotonic() - started < 10
    assert _post(kev, ns, "first-2", _as(issuer, ns, "first")).status_code == 403
    kev.delete("EventPolicy", "p", ns)
    # Back to allow-same-namespace: any account of the namespace, none of another.
    kev.wait_for(
        lambda: _post(kev, ns, "first-3", _as(issuer, ns, "first")).status_code == 202, 10, "deletion"
    )
    assert _post(kev, ns, "stranger", _as(issuer, "elsewhere", "first", audience_ns=ns)).status_code == 403
    ids = topic_ids(kev.settings.kafka_connection, naming.broker_topic(ns, "default"), 3)
    assert set(ids) == {"first-1", "batch-2", "first-3"}


def test_an_event_policys_filters_decide_which_events_its_senders_may_send(
    oidc_kev: Kev, issuer: JwksIssuer, ns: str
) -> None:
    kev = oidc_kev
    policy = _policy(
        "orders-only", ns, [f"system:serviceaccount:{ns}:*"], filters=[{"prefix": {"type": "order."}}]
    )
    kev.apply(broker_doc("default", ns), policy)
    headers = {**HEADERS, "ce-type": "order.created", "authorization": _as(issuer, ns, "app")}

    def accepted(event_id: str, type_: str) -> int:
        url = kev.broker_url(ns, "default")
        return kev.http.post(
            url, headers={**headers, "ce-id": event_id, "ce-type": type_}, content=b"{}"
        ).status_code

    kev.wait_for(lambda: accepted("order-1", "order.created") == 202, 30, "the policy")
    refused = kev.http.post(
        kev.broker_url(ns, "default"), headers={**headers, "ce-id": "x", "ce-type": "user.deleted"}
    )
    assert refused.status_code == 403 and "does not match the filters" in refused.text
    assert topic_ids(kev.settings.kafka_connection, naming.broker_topic(ns, "default"), 1) == ["order-1"]


def test_a_policy_naming_a_sender_without_an_oidc_identity_is_not_ready_and_allows_only_what_it_resolved(
    oidc_kev: Kev, issuer: JwksIssuer, ns: str
) -> None:
    kev = oidc_kev
    policy = _policy("mixed", ns, [f"system:serviceaccount:{ns}:known"])
    policy["spec"]["from"].append(
        {"ref": {"apiVersion": "sources.knative.dev/v1", "kind": "PingSource", "name": "beat"}}
    )
    kev.apply(broker_doc("default", ns), policy)

    def resolved() -> object:
        found = kev.get("EventPolicy", "mixed", ns)
        condition = found.status.condition("SubjectsResolved") if found is not None else None
        return condition if condition is not None and condition.status == "False" else None

    condition = kev.wait_for(resolved, 30, "SubjectsResolved False")
    assert condition.reason == "SubjectsNotResolved" and 'PingSource "beat"' in (condition.message or "")
    kev.wait_for(
        lambda: _post(kev, ns, "known", _as(issuer, ns, "known")).status_code == 202, 30, "the policy"
    )
    broker = kev.get("Broker", "default", ns)
    assert broker is not None
    ready = broker.status.condition("EventPoliciesReady")
    assert ready is not None and ready.status == "False" and ready.reason == "EventPoliciesNotReady"


def _config_features(**data: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config-features", "namespace": "knative-eventing"},
        "data": data,
    }


def _policies_condition(kev: Kev, ns: str, text: str) -> object:
    broker = kev.get("Broker", "default", ns)
    condition = broker.status.condition("EventPoliciesReady") if broker else None
    return condition if condition is not None and text in (condition.message or "") else None


@pytest.mark.parametrize(
    ("mode", "same_namespace", "other_namespace"),
    [("allow-same-namespace", 202, 403), ("allow-all", 202, 202), ("deny-all", 403, 403)],
)
def test_the_default_authorization_modes_of_config_features_apply_at_the_receiver(
    oidc_kev: Kev, issuer: JwksIssuer, ns: str, mode: str, same_namespace: int, other_namespace: int
) -> None:
    kev = oidc_kev
    kev.apply(broker_doc("default", ns))
    kev.wait_ready("Broker", "default", ns)
    # The receiver's environment says allow-same-namespace; config-features, as the controller applies it, wins.
    kev.apply(_config_features(**{"default-authorization-mode": mode}))
    try:
        condition = kev.wait_for(
            lambda: _policies_condition(kev, ns, f"default authorization mode {mode} decides"),
            what="the Broker's EventPoliciesReady to name the mode",
        )
        assert condition.reason == "DefaultAuthorizationMode"

        def post(event_id: str, authorization: str) -> httpx.Response:
            headers = {**HEADERS, "ce-id": event_id, "authorization": authorization}
            return kev.http.post(kev.broker_url(ns, "default"), headers=headers, content=b"{}")

        # The contract reaches the receiver a moment after the status: wait for the mode to hold there.
        same = kev.wait_for(
            lambda: (r := post("same", _as(issuer, ns, "app"))).status_code == same_namespace and r,
            what=f"the receiver to apply {mode}",
        )
        assert same.status_code == same_namespace
        other = post("other", _as(issuer, "elsewhere", "app", audience_ns=ns))
        assert other.status_code == other_namespace
        if other_namespace == 403:
            assert f"default authorization mode is {mode}" in other.text
    finally:
        kev.delete("ConfigMap", "config-features", "knative-eventing")
        kev.wait_for(
            lambda: _policies_condition(kev, ns, "default authorization mode allow-same-namespace decides"),
            what="the default mode to come back",
        )


def test_authentication_oidc_turned_off_in_config_features_is_followed_by_every_service(
    oidc_kev: Kev, issuer: JwksIssuer, ns: str
) -> None:
    kev = oidc_kev
    kev.apply(broker_doc("default", ns))
    kev.wait_ready("Broker", "default", ns)
    assert _post(kev, ns, "refused", None).status_code == 401
    kev.apply(_config_features(**{"authentication-oidc": "disabled"}))
    try:
        # No audience published, and the receiver takes events without a token.
        kev.wait_for(
            lambda: (
                (b := kev.get("Broker", "default", ns))
                and b.status.address
                and b.status.address.audience is None
            ),
            what="the Broker's address without an audience",
        )
        kev.wait_for(lambda: _post(kev, ns, "open", None).status_code == 202, what="the receiver to follow")
    finally:
        kev.delete("ConfigMap", "config-features", "knative-eventing")
    kev.wait_for(
        lambda: _post(kev, ns, "closed-again", None).status_code == 401, what="tokens required again"
    )
