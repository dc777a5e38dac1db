"""Channels, flows and sources on a real kube-apiserver: Knative YAML applied with kubectl becomes Ready and
delivers end to end, deletions clean up Kafka, and failures are recorded as Kubernetes Events.

As in test_kube_operator.py the data plane runs as local processes and the operator uses the chart's
ServiceAccount token; the sources runner here has a manual clock, so a PingSource fires when told to.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import parallel_doc, ping_source_doc, subscription_doc
from kube_stack import DATA_PLANE, consumer_groups, received_ids, running_stack, send_event, wait_positioned
from kubectl import Kubectl

from kev.stack import Stack
from keventing import events, naming

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(600)]

T0 = "2030-01-01T00:00:30+00:00"  # half a minute before the first tick of "* * * * *"


@pytest.fixture(scope="module")
def flow_stack(
    operator_env: dict[str, str], kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {**operator_env, "KEVENTING_SOURCES_CLOCK": "manual"}
    with running_stack(kafka, tmp_path_factory.mktemp("flow-logs"), env, (*DATA_PLANE, "sources")) as stack:
        yield stack


def test_channel_and_subscription_applied_with_kubectl_deliver_and_the_channel_owns_its_kafka_channel(
    flow_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any, kafka: str
) -> None:
    path = f"channel-{namespace}"
    channel = {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "Channel",
        "metadata": {"name": "orders", "namespace": namespace},
    }
    kubectl.apply(
        channel, subscription_doc("audit", namespace, "orders", "Channel", subscriber={"uri": sink.url(path)})
    )
    ready = kubectl.wait_ready("channels.messaging.knative.dev", "orders", namespace)
    url = ready["status"]["address"]["url"]
    backing = kubectl.get("kafkachannel", "orders", namespace)
    assert backing is not None, "a Channel without template is backed by a KafkaChannel"
    assert [o["uid"] for o in backing["metadata"]["ownerReferences"]] == [ready["metadata"]["uid"]]
    subscription = kubectl.wait_ready("subscription", "audit", namespace)
    assert subscription["status"]["physicalSubscription"]["subscriberUri"] == sink.url(path)
    group = naming.subscription_group(namespace, "orders", subscription["metadata"]["uid"])
    wait_positioned(kafka, group, naming.channel_topic(namespace, "orders"))

    sent = [send_event(flow_stack, url, "order.created") for _ in range(3)]
    assert sorted(received_ids(sink, path, 3)) == sorted(sent)

    # Deleting the Subscription deletes its consumer group once the finalizer ran.
    assert group in consumer_groups(kafka)
    kubectl.run("delete", "subscription", "audit", "-n", namespace, "--wait=true", "--timeout=60s")
    assert group not in consumer_groups(kafka)


def test_parallel_applied_with_kubectl_fans_each_event_out_to_every_branch(
    flow_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any
) -> None:
    branches = [{"subscriber": {"uri": sink.url(f"{branch}-{namespace}")}} for branch in ("left", "right")]
    kubectl.apply(
        parallel_doc(
            "fork",
            namespace,
            branches,
            channelTemplate={"apiVersion": "messaging.knative.dev/v1beta1", "kind": "KafkaChannel"},
        )
    )
    parallel = kubectl.wait_ready("parallel", "fork", namespace, timeout=90)
    url = parallel["status"]["address"]["url"]
    assert len(parallel["status"]["branchStatuses"]) == 2
    # Events sent once it is Ready are not missed: new consumer groups start where the topic ends now.
    sent = send_event(flow_stack, url, "work.requested")
    assert received_ids(sink, f"left-{namespace}", 1) == [sent]
    assert received_ids(sink, f"right-{namespace}", 1) == [sent]


def test_ping_source_applied_with_kubectl_fires_on_its_schedule_to_its_sink(
    flow_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any
) -> None:
    path = f"ping-{namespace}"
    kubectl.apply(
        ping_source_doc(
            "heartbeat",
            namespace,
            {"uri": sink.url(path)},
            schedule="* * * * *",
            contentType="application/json",
            data='{"beat": true}',
        )
    )
    source = kubectl.wait_ready("pingsource", "heartbeat", namespace)
    assert source["status"]["sinkUri"] == sink.url(path)
    runner = f"http://127.0.0.1:{flow_stack.sources_port}"
    source_id = f"PingSource/{namespace}/heartbeat"
    deadline = time.monotonic() + 30
    while source_id not in {p["id"] for p in httpx.get(f"{runner}/sources", timeout=5).json()["pings"]}:
        assert time.monotonic() < deadline, "the PingSource was never scheduled"
        time.sleep(0.25)
    assert httpx.post(f"{runner}/clock", json={"now": T0}, timeout=5).status_code == 200
    fired = [httpx.post(f"{runner}/clock", json={"advance": 60}, timeout=5).json()["fired"] for _ in range(2)]
    assert fired == [1, 1]
    received = [events.from_http(r.headers, r.body) for r in sink.wait_for(path, 2, timeout=60)]
    assert {e.type for e in received} == {"dev.knative.sources.ping"}
    assert {e.source for e in received} == {f"/apis/v1/namespaces/{namespace}/pingsources/heartbeat"}
    assert sorted(e.attributes["time"] for e in received) == ["2030-01-01T00:01:00Z", "2030-01-01T00:02:00Z"]
    kubectl.run("delete", "pingsource", "heartbeat", "-n", namespace, "--wait=true", "--timeout=60s")


def test_deleting_a_trigger_deletes_its_consumer_group(
    flow_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any, kafka: str
) -> None:
    broker = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker"}
    trigger = {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger"}
    kubectl.apply(
        {**broker, "metadata": {"name": "default", "namespace": namespace}},
        {
            **trigger,
            "metadata": {"name": "short-lived", "namespace": namespace},
            "spec": {"broker": "default", "subscriber": {"uri": sink.url("unused")}},
        },
    )
    kubectl.wait_ready("trigger", "short-lived", namespace)
    group = naming.trigger_group(namespace, "short-lived")
    wait_positioned(kafka, group, naming.broker_topic(namespace, "default"))
    kubectl.run("delete", "trigger", "short-lived", "-n", namespace, "--wait=true", "--timeout=60s")
    assert kubectl.get("trigger", "short-lived", namespace) is None
    assert group not in consumer_groups(kafka)


def test_a_resource_that_stops_being_ready_gets_one_warning_event_saying_why(
    flow_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any
) -> None:
    kubectl.apply(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "orphan", "namespace": namespace},
            "spec": {"broker": "absent", "subscriber": {"uri": sink.url("unused")}},
        }
    )
    trigger = kubectl.wait_for_condition("trigger", "orphan", namespace, "Ready", "False")

    def warnings() -> list[dict[str, Any]]:
        return [
            e
            for e in kubectl.list("events", namespace)
            if e["involvedObject"].get("name") == "orphan" and e["type"] == "Warning"
        ]

    deadline = time.monotonic() + 30
    while not (recorded := warnings()):
        assert time.monotonic() < deadline, "no Warning Event was recorded for the Trigger"
        time.sleep(0.25)
    [event] = recorded
    assert event["reason"] == "BrokerDoesNotExist"
    assert "absent" in event["message"]
    assert event["involvedObject"]["kind"] == "Trigger"
    assert event["involvedObject"]["uid"] == trigger["metadata"]["uid"]
    assert event["source"]["component"] == "keventing-controller"
    # Still not Ready for the same reason after more passes: no further Events.
    kubectl.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nudge", "namespace": namespace}}
    )
    time.sleep(2)  # several reconcile passes (coalesced at 50 ms) run meanwhile; nothing may be recorded
    assert len(warnings()) == 1


def test_a_broker_of_another_class_is_left_alone(flow_stack: Stack, kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {
                "name": "theirs",
                "namespace": namespace,
                "annotations": {"eventing.knative.dev/broker.class": "MTChannelBasedBroker"},
            },
        },
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "ours", "namespace": namespace},
        },
    )
    kubectl.wait_ready("broker", "ours", namespace)
    time.sleep(1)  # passes that ran after ours got Ready saw theirs too
    theirs = kubectl.get("broker", "theirs", namespace)
    assert theirs is not None
    assert "finalizers" not in theirs["metadata"]
    assert "status" not in theirs
    kubectl.run("delete", "broker", "theirs", "-n", namespace, "--wait=true", "--timeout=10s")
