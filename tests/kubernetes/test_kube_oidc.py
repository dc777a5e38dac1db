"""OIDC with the test cluster's service-account issuer: tokens made by TokenRequest (``kubectl create token
--audience``) are accepted for the right audience only, the keys found through the kube-apiserver's
discovery document (/.well-known/openid-configuration, /openid/v1/jwks); the dispatcher's token command
is TokenRequest for a service account too."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import Kev, RecordingSink
from helpers import broker_doc, trigger_doc
from kube_stack import issuer_env, oidc_namespace
from kubectl import Kubectl

from kev.cluster.launcher import LocalCluster
from kev.stack import Stack

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(600)]

HEADERS = {"ce-specversion": "1.0", "ce-type": "dev.test.oidc", "ce-source": "/tests/kube-oidc",
           "content-type": "application/json"}  # fmt: skip


@pytest.fixture(scope="module")
def token_namespace(kubectl: Kubectl) -> Iterator[str]:
    """A namespace with the service accounts tokens are requested for."""
    with oidc_namespace(kubectl, "oidc", ["sender", "dispatcher"]) as name:
        yield name


@pytest.fixture(scope="module")
def kube_oidc_kev(
    kafka: str,
    kube_cluster: LocalCluster,
    kubectl: Kubectl,
    token_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Kev]:
    token_command = (
        f"{kubectl.binary} --kubeconfig {kubectl.kubeconfig} create token dispatcher -n {token_namespace} "
        "--duration=10m --audience"
    )
    stack = Stack.on_free_ports(
        kafka,
        tmp_path_factory.mktemp("kube-oidc-logs"),
        "koidc",
        extra_env={
            **issuer_env(kube_cluster),
            "KEVENTING_OIDC_TOKEN_COMMAND": token_command,
            "KEVENTING_DEFAULT_TOPIC_PARTITIONS": "2",
        },
    )
    stack.start_all()
    try:
        stack.wait_ready(timeout=90)
        yield Kev(stack)
    finally:
        stack.stop_all()


def _token(kubectl: Kubectl, namespace: str, audience: str) -> str:
    return kubectl.run("create", "token", "sender", "-n", namespace, "--audience", audience).stdout.strip()


def _post(kev: Kev, namespace: str, broker: str, event_id: str, token: str) -> httpx.Response:
    headers = {**HEADERS, "ce-id": event_id, "authorization": f"Bearer {token}"}
    return kev.http.post(kev.broker_url(namespace, broker), headers=headers, content=b"{}")


def test_a_tokenrequest_token_for_the_brokers_audience_is_accepted_and_one_for_another_is_not(
    kube_oidc_kev: Kev, kubectl: Kubectl, token_namespace: str, sink: RecordingSink
) -> None:
    kev, ns = kube_oidc_kev, token_namespace
    kev.apply(
        broker_doc("default", ns), trigger_doc("display", ns, "default", sink.url(f"{ns}/kube-display"))
    )
    broker = kev.wait_ready("Broker", "default", ns)
    kev.wait_ready("Trigger", "display", ns)
    audience = f"eventing.knative.dev/broker/{ns}/default"
    assert broker.status.address is not None and broker.status.address.audience == audience
    accepted = _post(kev, ns, "default", "kube-valid", _token(kubectl, ns, audience))
    assert accepted.status_code == 202, accepted.text
    refused = _post(
        kev, ns, "default", "kube-other-audience", _token(kubectl, ns, "https://kubernetes.default.svc")
    )
    assert refused.status_code == 401 and "not for audience" in refused.text
    [received] = sink.wait_for(f"{ns}/kube-display", 1)
    assert received.event is not None and received.event.id == "kube-valid"


def test_the_dispatcher_delivers_to_another_broker_with_a_tokenrequest_token(
    kube_oidc_kev: Kev, kubectl: Kubectl, token_namespace: str, sink: RecordingSink
) -> None:
    kev, ns = kube_oidc_kev, token_namespace
    forward = trigger_doc("forward", ns, "first", "")
    forward["spec"]["subscriber"] = {
        "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "second"}
    }
    kev.apply(
        broker_doc("first", ns),
        broker_doc("second", ns),
        forward,
        trigger_doc("display", ns, "second", sink.url(f"{ns}/kube-second")),
    )
    kev.wait_ready("Trigger", "forward", ns)
    kev.wait_ready("Trigger", "display", ns)
    token = _token(kubectl, ns, f"eventing.knative.dev/broker/{ns}/first")
    assert _post(kev, ns, "first", "kube-hop", token).status_code == 202
    [received] = sink.wait_for(f"{ns}/kube-second", 1)
    assert received.event is not None and received.event.id == "kube-hop"
