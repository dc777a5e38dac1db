"""authentication-oidc in Kubernetes mode, end to end on a real kube-apiserver: the operator gives each
Trigger a ServiceAccount of its own (Knative's name, owned by the Trigger, garbage-collected with it), the
dispatcher delivers with that account's TokenRequest token for the subscriber's audience, and an EventPolicy
naming the Trigger lets its deliveries into a Broker. Operator and dispatcher run with the chart's RBAC."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from conftest import RecordingSink
from kube_stack import DATA_PLANE, issuer_env, oidc_namespace, running_stack, wait_positioned
from kubectl import Kubectl
from kubernetes_asyncio import client

from kev.cluster.launcher import LocalCluster
from kev.stack import Stack
from keventing import naming
from keventing.contract import ServiceAccount
from keventing.serviceaccounttokens import EXPIRATION_SECONDS, ServiceAccountTokenSource
from keventing.tokens import TokenUnavailable

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(600)]

SUBSCRIBER_AUDIENCE = "https://display.example/events"


@pytest.fixture(scope="module")
def namespace_with_sender(kubectl: Kubectl) -> Iterator[str]:
    with oidc_namespace(kubectl, "oidcsa", ["sender"]) as name:
        yield name


@pytest.fixture(scope="module")
def oidc_stack(
    operator_env: dict[str, str],
    kafka: str,
    kube_cluster: LocalCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    # The sources runner's clock is manual: a PingSource fires when the test says so.
    env = {**operator_env, **issuer_env(kube_cluster), "KEVENTING_SOURCES_CLOCK": "manual"}
    services = (*DATA_PLANE, "sources")
    with running_stack(kafka, tmp_path_factory.mktemp("oidcsa-logs"), env, services) as stack:
        yield stack


def _broker(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": namespace},
    }


def _trigger(name: str, namespace: str, broker: str, subscriber: dict) -> dict:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"broker": broker, "subscriber": subscriber},
    }


def _send(stack: Stack, kubectl: Kubectl, namespace: str, broker: str, account: str = "sender") -> str:
    audience = f"eventing.knative.dev/broker/{namespace}/{broker}"
    token = kubectl.run("create", "token", account, "-n", namespace, "--audience", audience).stdout.strip()
    event_id = uuid.uuid4().hex
    headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/tests/oidcsa", "ce-type": "dev.test.oidcsa",
               "content-type": "application/json", "authorization": f"Bearer {token}"}  # fmt: skip
    url = f"http://127.0.0.1:{stack.receiver_port}/{namespace}/{broker}"
    response = httpx.post(url, headers=headers, content=b"{}", timeout=10)
    assert response.status_code == 202, response.text
    return event_id


def _claims(token: str, public_key: Path, audience: str) -> dict:
    """The token's claims, its signature verified with the API server's service-account key."""
    return jwt.decode(token, public_key.read_text(), algorithms=["RS256"], audience=audience)


def test_a_trigger_gets_its_own_service_account_and_delivers_with_its_token(
    oidc_stack: Stack,
    kubectl: Kubectl,
    kube_cluster: LocalCluster,
    namespace_with_sender: str,
    sink: RecordingSink,
    kafka: str,
) -> None:
    ns, path = namespace_with_sender, f"oidcsa-{namespace_with_sender}/display"
    subscriber = {"uri": sink.url(path), "audience": SUBSCRIBER_AUDIENCE}
    kubectl.apply(_broker("default", ns), _trigger("display", ns, "default", subscriber))
    kubectl.wait_ready("broker", "default", ns)
    trigger = kubectl.wait_ready("trigger", "display", ns)
    account = naming.oidc_service_account("eventing.knative.dev/v1", "Trigger", "display")
    assert account == "displayoidc-eventing.knative.dev-trigger"
    assert trigger["status"]["auth"] == {"serviceAccountName": account}
    created = next(c for c in trigger["status"]["conditions"] if c["type"] == "OIDCIdentityCreated")
    assert created["status"] == "True"
    service_account = kubectl.get("serviceaccount", account, ns)
    assert service_account is not None
    [owner] = service_account["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Trigger", "display", trigger["metadata"]["uid"], True
    )  # fmt: skip

    wait_positioned(kafka, naming.trigger_group(ns, "display"), naming.broker_topic(ns, "default"))
    event_id = _send(oidc_stack, kubectl, ns, "default")
    [received] = sink.wait_for(path, 1, timeout=60)
    assert received.event is not None and received.event.id == event_id
    scheme, _, token = received.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = _claims(token, kube_cluster.pki.sa_pub, SUBSCRIBER_AUDIENCE)
    assert claims["sub"] == f"system:serviceaccount:{ns}:{account}"
    assert claims["aud"] == [SUBSCRIBER_AUDIENCE]

    kubectl.run("delete", "trigger", "display", "-n", ns)
    deadline = time.monotonic() + 60
    while kubectl.get("serviceaccount", account, ns) is not None:
        assert time.monotonic() < deadline, "the Trigger's ServiceAccount outlived it"
        time.sleep(0.5)


def test_an_event_policy_naming_a_trigger_lets_its_deliveries_into_a_broker(
    oidc_stack: Stack, kubectl: Kubectl, namespace_with_sender: str, sink: RecordingSink, kafka: str
) -> None:
    ns, path = namespace_with_sender, f"oidcsa-{namespace_with_sender}/second"
    forward = _trigger(
        "forward",
        ns,
        "first",
        {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "second"}},
    )
    policy = {
        "apiVersion": "eventing.knative.dev/v1alpha1",
        "kind": "EventPolicy",
        "metadata": {"name": "from-forward", "namespace": ns},
        "spec": {
            "to": [{"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "second"}}],
            "from": [
                {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "name": "forward"}}
            ],
        },
    }
    kubectl.apply(
        _broker("first", ns),
        _broker("second", ns),
        forward,
        _trigger("sink", ns, "second", {"uri": sink.url(path)}),
        policy,
    )
    kubectl.wait_ready("trigger", "forward", ns)
    kubectl.wait_ready("trigger", "sink", ns)
    account = naming.oidc_service_account("eventing.knative.dev/v1", "Trigger", "forward")
    resolved = kubectl.wait_ready("eventpolicy", "from-forward", ns)
    assert resolved["status"]["from"] == [f"system:serviceaccount:{ns}:{account}"]
    deadline = time.monotonic() + 60
    while not ((kubectl.get("broker", "second", ns) or {}).get("status") or {}).get("policies"):
        assert time.monotonic() < deadline, "the EventPolicy never applied to Broker second"
        time.sleep(0.3)

    # The sender may post to first (no policy there: same namespace) but not to second (only forward may).
    audience = f"eventing.knative.dev/broker/{ns}/second"
    token = kubectl.run("create", "token", "sender", "-n", ns, "--audience", audience).stdout.strip()
    refused = httpx.post(
        f"http://127.0.0.1:{oidc_stack.receiver_port}/{ns}/second",
        headers={
            "ce-specversion": "1.0",
            "ce-id": "refused",
            "ce-source": "/t",
            "ce-type": "t",
            "authorization": f"Bearer {token}",
        },  # fmt: skip
        content=b"{}",
        timeout=10,
    )
    assert refused.status_code == 403, refused.text

    wait_positioned(kafka, naming.trigger_group(ns, "forward"), naming.broker_topic(ns, "first"))
    wait_positioned(kafka, naming.trigger_group(ns, "sink"), naming.broker_topic(ns, "second"))
    event_id = _send(oidc_stack, kubectl, ns, "first")
    [received] = sink.wait_for(path, 1, timeout=60)
    assert received.event is not None and received.event.id == event_id


def test_a_ping_source_sends_with_its_own_service_accounts_token(
    oidc_stack: Stack,
    kubectl: Kubectl,
    kube_cluster: LocalCluster,
    namespace_with_sender: str,
    sink: RecordingSink,
) -> None:
    ns, path = namespace_with_sender, f"oidcsa-{namespace_with_sender}/ping"
    ping = {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": {"name": "tick", "namespace": ns},
        "spec": {"schedule": "* * * * *", "sink": {"uri": sink.url(path), "audience": SUBSCRIBER_AUDIENCE}},
    }
    kubectl.apply(ping)
    source = kubectl.wait_ready("pingsource", "tick", ns)
    account = naming.oidc_service_account("sources.knative.dev/v1", "PingSource", "tick")
    assert source["status"]["auth"] == {"serviceAccountName": account}
    runner = f"http://127.0.0.1:{oidc_stack.sources_port}"
    deadline = time.monotonic() + 30
    while f"PingSource/{ns}/tick" not in {
        p["id"] for p in httpx.get(f"{runner}/sources", timeout=5).json()["pings"]
    }:
        assert time.monotonic() < deadline, "the PingSource was never scheduled"
        time.sleep(0.25)
    assert (
        httpx.post(f"{runner}/clock", json={"now": "2030-01-01T00:00:30+00:00"}, timeout=5).status_code == 200
    )
    assert httpx.post(f"{runner}/clock", json={"advance": 60}, timeout=5).json()["fired"] == 1
    [received] = sink.wait_for(path, 1, timeout=60)
    token = received.headers["authorization"].removeprefix("Bearer ")
    claims = _claims(token, kube_cluster.pki.sa_pub, SUBSCRIBER_AUDIENCE)
    assert claims["sub"] == f"system:serviceaccount:{ns}:{account}"
    assert kubectl.get("serviceaccount", account, ns) is not None


async def test_tokenrequest_tokens_are_cached_and_a_missing_account_is_a_clear_failure(
    kube_api: client.ApiClient, kube_cluster: LocalCluster, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    await core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="sender"))
    )
    tokens = ServiceAccountTokenSource(api=kube_api)
    sender = ServiceAccount(namespace=namespace, name="sender")
    first = await tokens.token("aud-a", sender)
    assert await tokens.token("aud-a", sender) == first
    claims = _claims(await tokens.token("aud-b", sender), kube_cluster.pki.sa_pub, "aud-b")
    assert claims["sub"] == f"system:serviceaccount:{namespace}:sender"
    assert claims["exp"] - claims["iat"] >= EXPIRATION_SECONDS
    with pytest.raises(TokenUnavailable, match=rf'"missing" in namespace "{namespace}" failed: 404'):
        await tokens.token("aud-a", ServiceAccount(namespace=namespace, name="missing"))
