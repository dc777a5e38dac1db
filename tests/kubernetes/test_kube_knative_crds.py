"""keventing on a cluster that already has Knative's own CRDs: the operator works with them unchanged.

A second test cluster gets Knative Eventing's CRDs (the pinned ``knative.dev/eventing`` module from the Go
module proxy, cached by the toolchain) for every kind Knative itself defines, and keventing's only for the
kinds that come from Knative's Kafka extension (KafkaChannel, KafkaSource, KafkaSink). Knative YAML then
becomes Ready and delivers exactly as on keventing's CRDs, and `kubectl get` shows Ready in Knative's own
printer columns.

Knative's EventType CRD stores v1beta2 and converts to v1beta3 (kubectl's preferred version) through a
webhook: keventing's operator points that CRD at its own conversion webhook, so `kubectl get eventtypes`
works there too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import subscription_doc
from kube_stack import received_ids, running_stack, send_event
from kubectl import CRDS, Kubectl

from kev.cluster.launcher import LocalCluster
from kev.cluster.toolchain import Toolchain
from kev.kafka.embedded import free_port
from kev.stack import Stack

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(600)]

# Knative's CRDs for the kinds keventing serves.
KNATIVE_KINDS = (
    "eventtype",
    "broker",
    "trigger",
    "channel",
    "subscription",
    "sequence",
    "parallel",
    "pingsource",
    "apiserversource",
    "containersource",
    "sinkbindings",
    "in-memory-channel",
)


def _crd_names(path: Path) -> set[str]:
    return {d["metadata"]["name"] for d in yaml.safe_load_all(path.read_text()) if d}


@pytest.fixture(scope="module")
def knative_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, Kubectl]]:
    cluster = LocalCluster(tmp_path_factory.mktemp("knative-cluster"), progress=print)
    cluster.start()
    try:
        kubectl = Kubectl(Toolchain().binary("kubectl"), cluster.kubeconfig_path)
        knative = Toolchain().knative_crds()
        theirs = [knative / f"{kind}.yaml" for kind in KNATIVE_KINDS]
        their_names = set().union(*map(_crd_names, theirs))
        ours = [p for p in sorted(CRDS.glob("*.yaml")) if not _crd_names(p) & their_names]
        assert {p.name.split(".")[0] for p in ours} >= {"kafkachannels", "kafkasources", "kafkasinks"}
        for path in [*theirs, *ours]:
            kubectl.run("apply", "--server-side", "-f", str(path))
        for path in [*theirs, *ours]:
            kubectl.run("wait", "--for=condition=Established", "--timeout=60s", "-f", str(path))
        kubectl.run("create", "namespace", "keventing")
        yield cluster, kubectl
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def knative_stack(
    knative_cluster: tuple[LocalCluster, Kubectl], kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    cluster, _ = knative_cluster
    webhook_port = free_port()
    env = {
        "KEVENTING_DEFAULT_TOPIC_PARTITIONS": "2",
        "KEVENTING_KUBERNETES": "true",
        "KUBECONFIG": str(cluster.kubeconfig_path),
        "KEVENTING_RESYNC_SECONDS": "5",
        "KEVENTING_LEADER_ELECTION_NAMESPACE": "keventing",
        # The webhook (SinkBinding's, and EventType's conversions) on loopback, its Secret in "keventing".
        "KEVENTING_WEBHOOK_PORT": str(webhook_port),
        "KEVENTING_WEBHOOK_URL": f"https://127.0.0.1:{webhook_port}",
        "KEVENTING_WEBHOOK_NAMESPACE": "keventing",
    }
    with running_stack(kafka, tmp_path_factory.mktemp("knative-crd-logs"), env) as stack:
        yield stack


def test_knative_yaml_on_knatives_own_crds_becomes_ready_and_delivers(
    knative_cluster: tuple[LocalCluster, Kubectl], knative_stack: Stack, sink: Any
) -> None:
    _, kubectl = knative_cluster
    namespace = f"knative-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", namespace)
    trigger_path, channel_path, step_path = (f"{p}-{namespace}" for p in ("trigger", "channel", "step"))
    kubectl.apply(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {
                "name": "default",
                "namespace": namespace,
                "annotations": {"eventing.knative.dev/broker.class": "Kafka"},
            },
        },
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "orders", "namespace": namespace},
            "spec": {
                "broker": "default",
                "filters": [{"exact": {"type": "order.created"}}],
                "subscriber": {"uri": sink.url(trigger_path)},
            },
        },
        {
            "apiVersion": "messaging.knative.dev/v1",
            "kind": "Channel",
            "metadata": {"name": "audit", "namespace": namespace},
        },
        subscription_doc(
            "auditor", namespace, "audit", "Channel", subscriber={"uri": sink.url(channel_path)}
        ),
        {
            "apiVersion": "flows.knative.dev/v1",
            "kind": "Sequence",
            "metadata": {"name": "pipeline", "namespace": namespace},
            "spec": {
                # Knative's usual template: the Sequence's channels are InMemoryChannels (on Kafka topics).
                "channelTemplate": {"apiVersion": "messaging.knative.dev/v1", "kind": "InMemoryChannel"},
                "steps": [{"uri": sink.url(step_path)}],
            },
        },
    )
    broker = kubectl.wait_ready("broker", "default", namespace)
    kubectl.wait_ready("trigger", "orders", namespace)
    channel = kubectl.wait_ready("channels.messaging.knative.dev", "audit", namespace)
    kubectl.wait_ready("subscription", "auditor", namespace)
    sequence = kubectl.wait_ready("sequence", "pipeline", namespace, timeout=90)
    assert [c["channel"]["kind"] for c in sequence["status"]["channelStatuses"]] == ["InMemoryChannel"]
    kubectl.wait_ready("inmemorychannel", "pipeline-kn-sequence-0", namespace)

    # Knative's printer columns read the status keventing writes.
    table = kubectl.run("get", "brokers,triggers", "-n", namespace).stdout
    assert table.count("True") == 2, table
    assert broker["status"]["address"]["url"] in table

    send_event(knative_stack, broker["status"]["address"]["url"], "order.shipped")  # filtered out
    wanted = send_event(knative_stack, broker["status"]["address"]["url"], "order.created")
    assert received_ids(sink, trigger_path, 1) == [wanted]
    via_channel = send_event(knative_stack, channel["status"]["address"]["url"], "audit.entry")
    assert received_ids(sink, channel_path, 1) == [via_channel]
    via_sequence = send_event(knative_stack, sequence["status"]["address"]["url"], "step.input")
    assert received_ids(sink, step_path, 1) == [via_sequence]
    time.sleep(0.5)
    assert len(sink.requests(trigger_path)) == 1

    # The types seen at the Broker are recorded on Knative's EventType CRD (stored as v1beta2), and kubectl
    # reads them as v1beta3 through keventing's conversion webhook.
    def at_broker() -> list[dict[str, Any]]:
        listed = kubectl.list("eventtypes", namespace)
        return [e for e in listed if e["spec"].get("reference", {}).get("kind") == "Broker"]

    deadline = time.monotonic() + 60
    while len(recorded := at_broker()) < 2:
        assert time.monotonic() < deadline, f"EventTypes recorded: {recorded}"
        time.sleep(0.5)
    assert {e["apiVersion"] for e in recorded} == {"eventing.knative.dev/v1beta3"}
    types = sorted(a["value"] for e in recorded for a in e["spec"]["attributes"] if a["name"] == "type")
    assert types == ["order.created", "order.shipped"]
    table = kubectl.run("get", "eventtypes", "-n", namespace).stdout
    assert "order.created" in table and "/kube-test" in table, table
