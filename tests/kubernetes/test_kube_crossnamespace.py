"""Cross-namespace event links on a real kube-apiserver: a Trigger in one namespace reading a Broker of another
(``spec.brokerRef``), behind config-features' cross-namespace-event-links and the ``knsubscribe`` verb.

The operator (the chart's ServiceAccount) serves its webhook on loopback; the API server sends it the Triggers
that reference another namespace's Broker, and it asks the API server (SubjectAccessReview) whether their
creator may knsubscribe there. A developer is a ServiceAccount with a Role to create Triggers in their own
namespace only; the same request is refused, then admitted once a Role in the Broker's namespace grants the verb,
and events sent to the Broker reach the Trigger's subscriber.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_fixtures import RELEASE_NAMESPACE
from kube_stack import received_ids, running_stack, send_event
from kubectl import Kubectl

from controller.kubernetes.crossnamespace import WEBHOOK_NAME
from kev.cluster.launcher import LocalCluster
from kev.cluster.pki import kubeconfig, write_kubeconfig
from kev.kafka.embedded import free_port
from kev.stack import Stack

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(600)]

SYSTEM_NAMESPACE = f"system-{uuid.uuid4().hex[:6]}"
CONFIGURATION = f"keventing-crossnamespace-{uuid.uuid4().hex[:8]}"


def _forget_validating_webhooks(kubectl: Kubectl) -> None:
    """Delete every cross-namespace ValidatingWebhookConfiguration (an earlier operator's points nowhere now, and
    its failure policy Fail would refuse what this test creates)."""
    listed = json.loads(kubectl.run("get", "validatingwebhookconfigurations", "-o", "json").stdout)
    for item in listed["items"]:
        if any(w.get("name") == WEBHOOK_NAME for w in item.get("webhooks") or []):
            kubectl.run(
                "delete", "validatingwebhookconfiguration", item["metadata"]["name"], "--ignore-not-found"
            )


def _registered(kubectl: Kubectl) -> bool:
    result = kubectl.run("get", "validatingwebhookconfiguration", CONFIGURATION, "-o", "json", check=False)
    return result.returncode == 0


@pytest.fixture(scope="module")
def crossnamespace_stack(
    kafka: str,
    kubectl: Kubectl,
    operator_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    _forget_validating_webhooks(kubectl)
    kubectl.run("create", "namespace", SYSTEM_NAMESPACE)
    port = free_port()
    env = {
        **operator_env,
        "KEVENTING_SYSTEM_NAMESPACE": SYSTEM_NAMESPACE,
        "KEVENTING_HTTP_HOST": "127.0.0.1",
        "KEVENTING_WEBHOOK_PORT": str(port),
        "KEVENTING_WEBHOOK_URL": f"https://127.0.0.1:{port}",
        "KEVENTING_WEBHOOK_CONFIGURATION": CONFIGURATION,
        "KEVENTING_WEBHOOK_NAMESPACE": RELEASE_NAMESPACE,
    }
    try:
        with running_stack(kafka, tmp_path_factory.mktemp("crossnamespace-logs"), env) as stack:
            _wait(lambda: _registered(kubectl), "the validating webhook configuration")
            yield stack
    finally:
        _forget_validating_webhooks(kubectl)
        kubectl.run("delete", "namespace", SYSTEM_NAMESPACE, "--wait=false", "--ignore-not-found")


def _wait(check: Any, what: str, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _grant(kubectl: Kubectl, name: str, namespace: str, account_namespace: str, rule: dict[str, Any]) -> None:
    """A Role ``name`` in ``namespace`` with ``rule``, bound to the developer ServiceAccount of
    ``account_namespace``."""
    kubectl.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": [rule],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "developer", "namespace": account_namespace}],
        },
    )


def _developer(
    kubectl: Kubectl, cluster: LocalCluster, namespace: str, directory: Path
) -> tuple[str, Kubectl]:
    """A ServiceAccount in ``namespace`` that may create Triggers there and nothing else; its kubectl."""
    account = "developer"
    kubectl.run("create", "serviceaccount", account, "-n", namespace)
    verbs = ["get", "list", "create", "update", "patch"]
    _grant(
        kubectl, "trigger-author", namespace, namespace,
        {"apiGroups": ["eventing.knative.dev"], "resources": ["triggers"], "verbs": verbs},
    )  # fmt: skip
    token = kubectl.run("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    path = write_kubeconfig(
        directory / "developer-kubeconfig",
        kubeconfig(server=cluster.server, ca_cert=cluster.pki.ca_cert, token=token),
    )
    return f"system:serviceaccount:{namespace}:{account}", Kubectl(kubectl.binary, path)


def _trigger(name: str, namespace: str, broker_namespace: str, uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "brokerRef": {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Broker",
                "name": "shared",
                "namespace": broker_namespace,
            },
            "subscriber": {"uri": uri},
        },
    }


def _features(enabled: bool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config-features", "namespace": SYSTEM_NAMESPACE},
        "data": {"cross-namespace-event-links": "enabled" if enabled else "disabled"},
    }


def test_a_trigger_reads_another_namespaces_broker_only_with_the_flag_and_knsubscribe(
    crossnamespace_stack: Stack,
    kubectl: Kubectl,
    kube_cluster: LocalCluster,
    namespace: str,
    sink: Any,
    tmp_path: Path,
) -> None:
    infra = f"infra-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", infra)
    kubectl.apply(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "shared", "namespace": infra},
        }
    )
    broker = kubectl.wait_ready("Broker", "shared", infra, timeout=90)
    user, developer = _developer(kubectl, kube_cluster, namespace, tmp_path)
    path = f"cross-{namespace}"
    trigger = _trigger("audit", namespace, infra, sink.url(path))

    # The flag is off: refused at admission, naming the flag.
    kubectl.apply(_features(enabled=False))
    refused = developer.run("apply", "-f", "-", stdin=json.dumps(trigger), check=False)
    assert refused.returncode != 0
    assert "cross-namespace-event-links" in refused.stderr, refused.stderr

    # The flag is on, but the developer may not knsubscribe in the Broker's namespace.
    kubectl.apply(_features(enabled=True))
    refused = developer.run("apply", "-f", "-", stdin=json.dumps(trigger), check=False)
    assert refused.returncode != 0
    assert f'user "{user}" may not knsubscribe to brokers in namespace "{infra}"' in refused.stderr, (
        refused.stderr
    )
    assert kubectl.get("Trigger", "audit", namespace) is None

    # A Trigger on a Broker of its own namespace never asks the webhook.
    own = {**trigger, "metadata": {"name": "local", "namespace": namespace}}
    own["spec"] = {"broker": "default", "subscriber": {"uri": sink.url("unused")}}
    developer.run("apply", "-f", "-", stdin=json.dumps(own))

    # A Role in the Broker's namespace grants knsubscribe: admitted, Ready, and it delivers.
    _grant(
        kubectl,
        "subscribe-shared",
        infra,
        namespace,
        {"apiGroups": ["eventing.knative.dev"], "resources": ["brokers"], "verbs": ["knsubscribe"]},
    )
    developer.run("apply", "-f", "-", stdin=json.dumps(trigger))
    ready = kubectl.wait_ready("Trigger", "audit", namespace, timeout=90)
    assert ready["status"]["subscriberUri"] == sink.url(path)
    event_id = send_event(crossnamespace_stack, broker["status"]["address"]["url"], "audit.event")
    assert received_ids(sink, path, 1) == [event_id]

    # Turning the flag off stops the Trigger reading the other namespace: not Ready, saying why.
    kubectl.apply(_features(enabled=False))
    stopped = kubectl.wait_for_condition("Trigger", "audit", namespace, "Ready", "False", timeout=60)
    ready_condition = next(c for c in stopped["status"]["conditions"] if c["type"] == "Ready")
    assert ready_condition["reason"] == "CrossNamespaceEventLinksDisabled"


def test_a_subscription_to_another_namespaces_channel_needs_knsubscribe_on_that_channel(
    crossnamespace_stack: Stack, kubectl: Kubectl, kube_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    infra = f"infra-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", infra)
    kubectl.apply(
        {
            "apiVersion": "messaging.knative.dev/v1beta1",
            "kind": "KafkaChannel",
            "metadata": {"name": "audit", "namespace": infra},
            "spec": {"numPartitions": 1, "replicationFactor": 1},
        },
        _features(enabled=True),
    )
    kubectl.wait_ready("KafkaChannel", "audit", infra, timeout=90)
    user, developer = _developer(kubectl, kube_cluster, namespace, tmp_path)
    _grant(
        kubectl,
        "subscription-author",
        namespace,
        namespace,
        {
            "apiGroups": ["messaging.knative.dev"],
            "resources": ["subscriptions"],
            "verbs": ["get", "list", "create", "update", "patch"],
        },
    )
    subscription = {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "Subscription",
        "metadata": {"name": "audit-reader", "namespace": namespace},
        "spec": {
            "channel": {
                "apiVersion": "messaging.knative.dev/v1beta1",
                "kind": "KafkaChannel",
                "name": "audit",
                "namespace": infra,
            },
            "subscriber": {"uri": "http://reader.example.svc.cluster.local/"},
        },
    }
    refused = developer.run("apply", "-f", "-", stdin=json.dumps(subscription), check=False)
    assert refused.returncode != 0
    assert f'user "{user}" may not knsubscribe to kafkachannels in namespace "{infra}"' in refused.stderr, (
        refused.stderr
    )
    _grant(
        kubectl,
        "subscribe-audit",
        infra,
        namespace,
        {
            "apiGroups": ["messaging.knative.dev"],
            "resources": ["kafkachannels"],
            "resourceNames": ["audit"],
            "verbs": ["knsubscribe"],
        },
    )
    developer.run("apply", "-f", "-", stdin=json.dumps(subscription))
    ready = kubectl.wait_ready("Subscription", "audit-reader", namespace, timeout=90)
    assert (
        ready["status"]["annotations"]["kafka.eventing.knative.dev/topic"]
        == f"knative-messaging-kafka.{infra}.audit"
    )
