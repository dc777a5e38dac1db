"""The operator on a real kube-apiserver: Knative YAML applied with kubectl becomes Ready and delivers.

The data plane (receiver, dispatcher) runs as local processes on the session's Kafka, as `kev up
--kubernetes` runs it; the operator is `kev controller --kubernetes` with the token of the chart's
ServiceAccount, so that every test here also proves the chart's RBAC sufficient.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import yaml
from kube_stack import running_stack, send_event, topics, wait_positioned
from kubectl import ROOT, Kubectl

from kev.cluster.launcher import LocalCluster
from kev.stack import Stack, kev_command
from keventing import events, naming

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def operator_stack(
    operator_env: dict[str, str], kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(kafka, tmp_path_factory.mktemp("operator-logs"), operator_env) as stack:
        yield stack


def _broker(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": namespace},
    }


def _trigger(name: str, namespace: str, broker: str, uri: str, **spec: object) -> dict:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"broker": broker, "subscriber": {"uri": uri}, **spec},
    }


def test_broker_and_trigger_applied_with_kubectl_become_ready_and_deliver(
    operator_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any, kafka: str
) -> None:
    path = f"kube-{namespace}"
    kubectl.apply(
        _broker("default", namespace),
        _trigger(
            "orders",
            namespace,
            "default",
            sink.url(path),
            filters=[{"exact": {"type": "order.created"}}],
        ),
    )
    broker = kubectl.wait_ready("broker", "default", namespace)
    url = broker["status"]["address"]["url"]
    assert url == f"{operator_stack.ingress_url}/{namespace}/default"
    conditions = {c["type"]: c for c in broker["status"]["conditions"]}
    assert {"Ready", "TopicReady", "Addressable"} <= set(conditions)
    assert all("lastTransitionTime" in c for c in conditions.values())
    assert broker["status"]["observedGeneration"] == broker["metadata"]["generation"]

    trigger = kubectl.wait_ready("trigger", "orders", namespace)
    assert trigger["status"]["subscriberUri"] == sink.url(path)
    # A new group starts at the latest record (Knative's default): send once the dispatcher's group is in place.
    wait_positioned(
        kafka, naming.trigger_group(namespace, "orders"), naming.broker_topic(namespace, "default")
    )

    send_event(operator_stack, url, "order.shipped")  # filtered out
    wanted = send_event(operator_stack, url, "order.created")
    received = sink.wait_for(path, 1, timeout=60)
    got = [events.from_http(r.headers, r.body) for r in received]
    assert [e.id for e in got] == [wanted]

    # Both types seen at the Broker are recorded as EventTypes in the cluster, owned by the Broker.
    deadline = time.monotonic() + 60
    # (In v1beta2, the version stored: v1beta3, kubectl's default, needs the conversion webhook.)
    while len(recorded := kubectl.list("eventtypes.v1beta2.eventing.knative.dev", namespace)) < 2:
        assert time.monotonic() < deadline, f"EventTypes recorded: {recorded}"
        time.sleep(0.5)
    assert sorted(e["spec"]["type"] for e in recorded) == ["order.created", "order.shipped"]
    for event_type in recorded:
        owners = event_type["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [
            ("Broker", "default", broker["metadata"]["uid"])
        ]


def test_trigger_without_its_broker_is_not_ready_until_the_broker_exists(
    operator_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any
) -> None:
    kubectl.apply(_trigger("early", namespace, "later", sink.url("unused")))
    trigger = kubectl.wait_for_condition("trigger", "early", namespace, "Ready", "False")
    ready = next(c for c in trigger["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "BrokerDoesNotExist"
    assert "later" in ready["message"]
    kubectl.apply(_broker("later", namespace))
    kubectl.wait_ready("trigger", "early", namespace)


def test_deleting_a_broker_deletes_its_topic_after_the_finalizer_ran(
    operator_stack: Stack, kubectl: Kubectl, namespace: str, kafka: str
) -> None:
    kubectl.apply(_broker("doomed", namespace))
    broker = kubectl.wait_ready("broker", "doomed", namespace)
    assert broker["metadata"]["finalizers"] == ["keventing.knative.dev/cleanup"]
    topic = naming.broker_topic(namespace, "doomed")
    assert topic in topics(kafka)
    kubectl.run("delete", "broker", "doomed", "-n", namespace, "--wait=true", "--timeout=60s")
    assert kubectl.get("broker", "doomed", namespace) is None
    assert topic not in topics(kafka)


def test_an_invalid_object_is_not_ready_with_the_field_that_is_wrong(
    operator_stack: Stack, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(
        _trigger("bad", namespace, "default", "http://127.0.0.1:1/", delivery={"backoffDelay": "soon"})
    )
    trigger = kubectl.wait_for_condition("trigger", "bad", namespace, "Ready", "False")
    ready = next(c for c in trigger["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "backoffDelay" in ready["message"]


def test_a_sequence_owns_real_channels_and_subscriptions_that_are_collected_with_it(
    operator_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any
) -> None:
    sequence = {
        "apiVersion": "flows.knative.dev/v1",
        "kind": "Sequence",
        "metadata": {"name": "pipeline", "namespace": namespace},
        "spec": {
            "channelTemplate": {"apiVersion": "messaging.knative.dev/v1beta1", "kind": "KafkaChannel"},
            "steps": [{"uri": sink.url(f"step-{namespace}")}],
            "reply": {"uri": sink.url(f"reply-{namespace}")},
        },
    }
    kubectl.apply(sequence)
    kubectl.wait_ready("sequence", "pipeline", namespace, timeout=90)
    channels = kubectl.list("kafkachannels", namespace)
    subscriptions = kubectl.list("subscriptions", namespace)
    assert channels and subscriptions
    seq_uid = kubectl.get("sequence", "pipeline", namespace)["metadata"]["uid"]  # type: ignore[index]
    for child in [*channels, *subscriptions]:
        owners = child["metadata"]["ownerReferences"]
        assert any(o["uid"] == seq_uid and o.get("controller") for o in owners), child["metadata"]["name"]
    kubectl.run("delete", "sequence", "pipeline", "-n", namespace, "--wait=true", "--timeout=60s")
    deadline = time.monotonic() + 60
    while kubectl.list("subscriptions", namespace) or kubectl.list("kafkachannels", namespace):
        assert time.monotonic() < deadline, "the Sequence's children were not garbage-collected"
        time.sleep(0.5)


def _subscribed_trigger(name: str, namespace: str, broker: str, subscriber: dict[str, Any]) -> dict:
    trigger = _trigger(name, namespace, broker, "unused")
    trigger["spec"]["subscriber"] = subscriber
    return trigger


def test_a_trigger_to_a_core_service_gets_its_cluster_address_with_the_relative_uri(
    operator_stack: Stack, kubectl: Kubectl, namespace: str
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "display", "namespace": namespace},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
    }
    subscriber = {"ref": {"apiVersion": "v1", "kind": "Service", "name": "display"}, "uri": "/path"}
    kubectl.apply(
        _broker("default", namespace), service, _subscribed_trigger("svc", namespace, "default", subscriber)
    )
    trigger = kubectl.wait_ready("trigger", "svc", namespace)
    assert trigger["status"]["subscriberUri"] == f"http://display.{namespace}.svc.cluster.local/path"


ADDRESSABLE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "endpoints.test.keventing.dev"},
    "spec": {
        "group": "test.keventing.dev",
        "scope": "Namespaced",
        "names": {"plural": "endpoints", "singular": "endpoint", "kind": "Endpoint"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}
# How a user lets keventing read their Addressable kind (Knative's convention, aggregated by the chart).
ADDRESSABLE_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": "test-endpoint-addressable", "labels": {"duck.knative.dev/addressable": "true"}},
    "rules": [
        {"apiGroups": ["test.keventing.dev"], "resources": ["endpoints"], "verbs": ["get", "list", "watch"]}
    ],
}


def test_a_trigger_to_a_custom_addressable_is_ready_once_the_object_has_an_address(
    operator_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any
) -> None:
    subscriber = {"ref": {"apiVersion": "test.keventing.dev/v1", "kind": "Endpoint", "name": "target"}}
    kubectl.apply(
        _broker("default", namespace), _subscribed_trigger("duck", namespace, "default", subscriber)
    )
    trigger = kubectl.wait_for_condition("trigger", "duck", namespace, "SubscriberResolved", "False")
    resolved = next(c for c in trigger["status"]["conditions"] if c["type"] == "SubscriberResolved")
    assert resolved["reason"] == "Unable to get the Subscriber's URI"
    assert (
        resolved["message"]
        == f'Endpoint.test.keventing.dev "target" in namespace "{namespace}" does not exist'
    )

    # The kind is installed and an object of it appears: the next resync resolves it.
    kubectl.apply(ADDRESSABLE_CRD, ADDRESSABLE_ROLE)
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s", "crd/endpoints.test.keventing.dev")
    url = sink.url(f"duck-{namespace}")
    kubectl.apply(
        {
            "apiVersion": "test.keventing.dev/v1",
            "kind": "Endpoint",
            "metadata": {"name": "target", "namespace": namespace},
            "status": {"address": {"url": url}},
        }
    )
    trigger = kubectl.wait_ready("trigger", "duck", namespace)
    assert trigger["status"]["subscriberUri"] == url


def _kev(cluster: LocalCluster, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`kev --kubeconfig …` as a user runs it (a wide terminal, so that table cells are not cut)."""
    return subprocess.run(
        [*kev_command(), "--kubeconfig", str(cluster.kubeconfig_path), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "400"},
    )


def test_kev_applies_gets_and_deletes_the_quickstart_on_a_cluster(
    operator_stack: Stack, kube_cluster: LocalCluster, kubectl: Kubectl
) -> None:
    try:
        applied = _kev(kube_cluster, "apply", "-f", "examples/quickstart")
        assert applied.returncode == 0, applied.stderr
        assert "broker.eventing.knative.dev/default created" in applied.stdout
        assert "trigger.eventing.knative.dev/event-display created" in applied.stdout
        again = _kev(kube_cluster, "apply", "-f", "examples/quickstart")
        assert "trigger.eventing.knative.dev/event-display unchanged" in again.stdout, again.stderr
        shown = kubectl.run(
            "get", "trigger", "event-display", "-n", "default", "--show-managed-fields", "-o", "json"
        )
        managers = {
            f["manager"]: f["operation"] for f in orjson.loads(shown.stdout)["metadata"]["managedFields"]
        }
        assert managers["kev"] == "Apply"

        # `kev get` shows the statuses the operator wrote.
        kubectl.wait_ready("trigger", "event-display", "default")
        table = _kev(kube_cluster, "get", "triggers", "-n", "default")
        assert table.returncode == 0, table.stderr
        row = next(line for line in table.stdout.splitlines() if line.startswith("event-display"))
        assert row.split()[1:3] == ["True", "http://localhost:8081"]
        listed = orjson.loads(_kev(kube_cluster, "get", "brokers", "-n", "default", "-o", "json").stdout)
        [broker] = listed["items"]
        assert broker["status"]["address"]["url"] == f"{operator_stack.ingress_url}/default/default"

        # A Trigger whose subscriber is missing: its REASON column says why.
        subscriber = {"ref": {"apiVersion": "v1", "kind": "Service", "name": "nowhere"}}
        missing = yaml.safe_dump(_subscribed_trigger("lost", "default", "default", subscriber))
        assert _kev(kube_cluster, "apply", "-f", "-", stdin=missing).returncode == 0
        kubectl.wait_for_condition("trigger", "lost", "default", "SubscriberResolved", "False")
        table = _kev(kube_cluster, "get", "triggers", "-n", "default")
        row = next(line for line in table.stdout.splitlines() if line.startswith("lost"))
        assert row.split()[1] == "False"
        assert 'Service "nowhere" in namespace "default" does not exist' in row

        deleted = _kev(kube_cluster, "delete", "trigger", "event-display", "-n", "default")
        assert deleted.returncode == 0, deleted.stderr
        assert 'trigger "event-display" deleted' in deleted.stdout
        deadline = time.monotonic() + 60
        while kubectl.get("trigger", "event-display", "default") is not None:
            assert time.monotonic() < deadline, "the Trigger was not deleted"
            time.sleep(0.25)
        missing = _kev(kube_cluster, "delete", "trigger", "event-display", "-n", "default")
        assert missing.returncode == 1
        assert 'Trigger "event-display" not found in namespace "default"' in missing.stderr
    finally:
        kubectl.run(
            "delete", "-f", str(ROOT / "examples" / "quickstart"), "--ignore-not-found", "--wait=false"
        )


def test_kev_validates_before_it_applies_to_a_cluster(
    operator_stack: Stack, kube_cluster: LocalCluster, kubectl: Kubectl, namespace: str
) -> None:
    bad = _trigger("bad", namespace, "default", "http://127.0.0.1:1/", delivery={"backoffDelay": "soon"})
    result = _kev(kube_cluster, "apply", "-f", "-", stdin=yaml.safe_dump(bad))
    assert result.returncode == 1
    assert "Trigger 'bad' is invalid" in result.stderr
    assert "backoffDelay" in result.stderr
    assert kubectl.get("trigger", "bad", namespace) is None


def test_kev_event_send_finds_the_broker_address_on_the_cluster(
    operator_stack: Stack, kube_cluster: LocalCluster, kubectl: Kubectl, namespace: str
) -> None:
    applied = _kev(kube_cluster, "apply", "-f", "-", stdin=yaml.safe_dump(_broker("default", namespace)))
    assert applied.returncode == 0, applied.stderr
    kubectl.wait_ready("broker", "default", namespace)
    described = _kev(kube_cluster, "describe", "broker", "default", "-n", namespace)
    assert described.returncode == 0, described.stderr
    assert f"{operator_stack.ingress_url}/{namespace}/default" in described.stdout
    sent = _kev(kube_cluster, "event", "send", "--broker", "default", "-n", namespace, "--data", "{}")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("202")


def test_kev_with_a_context_the_kubeconfig_lacks_says_so(kube_cluster: LocalCluster) -> None:
    result = _kev(kube_cluster, "--context", "no-such-context", "get", "triggers")
    assert result.returncode == 1
    assert "no-such-context" in result.stderr


def test_an_in_memory_channel_and_subscription_applied_with_kubectl_deliver(
    operator_stack: Stack, kubectl: Kubectl, kube_cluster: LocalCluster, namespace: str, sink: Any, kafka: str
) -> None:
    path = f"imc-{namespace}"
    channel = {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "InMemoryChannel",
        "metadata": {"name": "events", "namespace": namespace},
    }
    subscription = {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "Subscription",
        "metadata": {"name": "to-sink", "namespace": namespace},
        "spec": {
            "channel": {
                "apiVersion": "messaging.knative.dev/v1",
                "kind": "InMemoryChannel",
                "name": "events",
            },
            "subscriber": {"uri": sink.url(path)},
        },
    }
    kubectl.apply(channel, subscription)
    imc = kubectl.wait_ready("imc", "events", namespace)
    url = imc["status"]["address"]["url"]
    assert url == f"{operator_stack.ingress_url}/inmemorychannels/{namespace}/events"
    assert {"Ready", "TopicReady", "Addressable"} <= {c["type"] for c in imc["status"]["conditions"]}
    sub = kubectl.wait_ready("subscription", "to-sink", namespace)
    assert sub["status"]["physicalSubscription"]["subscriberUri"] == sink.url(path)
    deadline = time.monotonic() + 60
    while not (imc := kubectl.get("imc", "events", namespace) or {}).get("status", {}).get("subscribers"):
        assert time.monotonic() < deadline, f"the InMemoryChannel lists no subscribers: {imc}"
        time.sleep(0.25)
    assert [(s["uid"], s["ready"]) for s in imc["status"]["subscribers"]] == [
        (sub["metadata"]["uid"], "True")
    ]

    topic = naming.channel_topic(namespace, "events", "InMemoryChannel")
    wait_positioned(kafka, naming.subscription_group(namespace, "events", sub["metadata"]["uid"]), topic)
    wanted = send_event(operator_stack, url, "imc.event")
    received = sink.wait_for(path, 1, timeout=60)
    assert [events.from_http(r.headers, r.body).id for r in received] == [wanted]

    table = _kev(kube_cluster, "get", "imc", "-n", namespace)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("events"))
    assert row.split()[1:3] == ["True", url]


def test_kev_replay_pauses_and_moves_a_trigger_on_a_cluster(
    operator_stack: Stack, kube_cluster: LocalCluster, kubectl: Kubectl, namespace: str, sink: Any, kafka: str
) -> None:
    path = f"kube-replay-{namespace}"
    kubectl.apply(_broker("default", namespace), _trigger("again", namespace, "default", sink.url(path)))
    url = kubectl.wait_ready("broker", "default", namespace)["status"]["address"]["url"]
    kubectl.wait_ready("trigger", "again", namespace)
    wait_positioned(
        kafka, naming.trigger_group(namespace, "again"), naming.broker_topic(namespace, "default")
    )
    sent = {send_event(operator_stack, url, "replayed") for _ in range(2)}
    sink.wait_for(path, 2, timeout=60)

    # The annotation goes through the API server; the contract and the group are on the stack's Kafka.
    replay = subprocess.run(
        [*kev_command(), "--kubeconfig", str(kube_cluster.kubeconfig_path), "replay", "again"]
        + ["-n", namespace, "--to-earliest"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka, "KEVENTING_INSTANCE": operator_stack.instance},
    )
    assert replay.returncode == 0, replay.stderr
    assert f"resumed Trigger {namespace}/again: Ready" in replay.stdout
    received = sink.wait_for(path, 4, timeout=60)
    assert sorted(events.from_http(r.headers, r.body).id for r in received) == sorted([*sent, *sent])
    trigger = kubectl.get("trigger", "again", namespace)
    assert trigger is not None
    assert "keventing.knative.dev/paused" not in (trigger["metadata"].get("annotations") or {})
