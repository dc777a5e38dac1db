"""Sequence and Parallel compile to KafkaChannels and Subscriptions; their statuses aggregate those."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from helpers import broker_doc, kafka_channel_doc, parallel_doc, ref, sequence_doc, trigger_doc

from controller import flows
from controller.local import _owned_part
from controller.reconciler import ControllerConfig, Desired, reconcile
from keventing.resources import Resource, ResourceInvalid, ResourceKey, parse_resource
from keventing.store import decode_resource

CONFIG = ControllerConfig(ingress_url="http://localhost:8080")


def _parse(*documents: dict[str, Any]) -> list[Resource]:
    resources = [parse_resource(d) for d in documents]
    for resource in resources:
        resource.metadata.uid = f"uid-{resource.name}"
    return resources


def _reconcile(*documents: dict[str, Any], stored: list[Resource] | None = None) -> Desired:
    return reconcile([*_parse(*documents), *(stored or [])], CONFIG)


def _stored(desired: Desired) -> list[Resource]:
    """The generated children as the local store gives them back (through their JSON document)."""
    return [
        decode_resource(orjson.dumps(child.to_document(with_status=False)))
        for child in desired.children.values()
    ]


def _steps(*paths: str) -> list[dict[str, Any]]:
    return [{"uri": f"http://steps/{p}"} for p in paths]


# ------------------------------------------------------------------------------------------ Sequence


def test_sequence_builds_knative_named_channels_and_subscriptions_it_owns() -> None:
    desired = _reconcile(sequence_doc("seq", "ns1", _steps("a", "b", "c")))
    names = [f"seq-kn-sequence-{i}" for i in range(3)]
    assert sorted(desired.children) == sorted(
        [ResourceKey("KafkaChannel", "ns1", n) for n in names]
        + [ResourceKey("Subscription", "ns1", n) for n in names]
    )
    for child in desired.children.values():
        owner = child.metadata.ownerReferences[0]
        assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Sequence", "seq", "uid-seq", True)


def test_sequence_step_replies_to_the_next_channel_and_the_last_to_the_sequence_reply() -> None:
    document = sequence_doc("seq", "ns1", _steps("a", "b"), reply={"uri": "http://final"})
    document["spec"]["steps"][1]["delivery"] = {"retry": 3}
    desired = _reconcile(document)
    first = desired.contract["Subscription/ns1/seq-kn-sequence-0"].egress
    second = desired.contract["Subscription/ns1/seq-kn-sequence-1"].egress
    assert first.topics == ("knative-messaging-kafka.ns1.seq-kn-sequence-0",)
    assert (first.destination, first.reply.url) == (
        "http://steps/a",
        "http://localhost:8080/channels/ns1/seq-kn-sequence-1",
    )
    assert (second.destination, second.reply.url) == ("http://steps/b", "http://final")
    assert (first.delivery.retry, second.delivery.retry) == (0, 3)


def test_sequence_without_reply_drops_what_the_last_step_answers() -> None:
    desired = _reconcile(sequence_doc("seq", "ns1", _steps("a")))
    assert desired.contract["Subscription/ns1/seq-kn-sequence-0"].egress.reply.strategy == "discard"


def test_sequence_address_is_its_first_channel_and_status_lists_its_children() -> None:
    desired = _reconcile(sequence_doc("seq", "ns1", _steps("a", "b")))
    status = desired.statuses[ResourceKey("Sequence", "ns1", "seq")]
    assert status.ready
    assert status.address.url == "http://localhost:8080/channels/ns1/seq-kn-sequence-0"
    assert [(c.channel.kind, c.channel.name, c.ready.status) for c in status.channelStatuses] == [
        ("KafkaChannel", "seq-kn-sequence-0", "True"),
        ("KafkaChannel", "seq-kn-sequence-1", "True"),
    ]
    assert [s.subscription.name for s in status.subscriptionStatuses] == [
        "seq-kn-sequence-0",
        "seq-kn-sequence-1",
    ]
    assert [c.type for c in status.conditions] == [
        "Ready",
        "ChannelsReady",
        "SubscriptionsReady",
        "Addressable",
    ]


def test_sequence_with_a_missing_step_is_not_ready_until_the_step_appears() -> None:
    sequence = sequence_doc("seq", "ns1", [ref("Broker", "later")], reply={"uri": "http://final"})
    status = _reconcile(sequence).statuses[ResourceKey("Sequence", "ns1", "seq")]
    ready = status.condition("Ready")
    assert (ready.status, ready.reason) == ("False", "SubscriptionsNotReady")
    assert 'Subscription "seq-kn-sequence-0" is not ready' in ready.message
    assert 'Broker "later" in namespace "ns1" does not exist' in ready.message
    assert (
        _reconcile(sequence, broker_doc("later", "ns1")).statuses[ResourceKey("Sequence", "ns1", "seq")].ready
    )


def test_sequence_reply_can_be_a_broker() -> None:
    desired = _reconcile(
        broker_doc("b", "ns1"), sequence_doc("seq", "ns1", _steps("a"), reply=ref("Broker", "b"))
    )
    assert (
        desired.contract["Subscription/ns1/seq-kn-sequence-0"].egress.reply.url
        == "http://localhost:8080/ns1/b"
    )


@pytest.mark.parametrize("kind", ["Sequence", "Parallel"])
def test_trigger_can_deliver_to_a_flow_by_reference(kind: str) -> None:
    flow = (
        sequence_doc("flow", "ns1", _steps("a"))
        if kind == "Sequence"
        else parallel_doc("flow", "ns1", [{"subscriber": {"uri": "http://x"}}])
    )
    desired = _reconcile(
        broker_doc("b", "ns1"), flow, trigger_doc("t", "ns1", "b", "", subscriber=ref(kind, "flow"))
    )
    expected = "flow-kn-sequence-0" if kind == "Sequence" else "flow-kn-parallel"
    assert desired.statuses[ResourceKey("Trigger", "ns1", "t")].subscriberUri == (
        f"http://localhost:8080/channels/ns1/{expected}"
    )


def test_sequence_without_steps_or_with_absolute_uri_next_to_ref_is_rejected() -> None:
    with pytest.raises(ResourceInvalid, match=r"spec\.steps"):
        parse_resource(sequence_doc("seq", "ns1", []))
    with pytest.raises(ResourceInvalid, match=r"spec\.steps\[0\]\.uri"):
        parse_resource(sequence_doc("seq", "ns1", [{**ref("Broker", "b"), "uri": "http://abs"}]))


# ------------------------------------------------------------------------------------------ Parallel


def _branches() -> list[dict[str, Any]]:
    return [
        {
            "filter": {"uri": "http://f/even"},
            "subscriber": {"uri": "http://s/even"},
            "reply": {"uri": "http://r/even"},
        },
        {"subscriber": {"uri": "http://s/all"}, "delivery": {"retry": 4}},
    ]


def test_parallel_builds_ingress_and_branch_channels_with_filter_and_subscriber_subscriptions() -> None:
    desired = _reconcile(parallel_doc("p", "ns1", _branches(), reply={"uri": "http://r/default"}))
    assert {k.name for k in desired.children if k.kind == "KafkaChannel"} == {
        "p-kn-parallel",
        "p-kn-parallel-0",
        "p-kn-parallel-1",
    }
    assert {k.name for k in desired.children if k.kind == "Subscription"} == {
        "p-kn-parallel-filter-0",
        "p-kn-parallel-filter-1",
        "p-kn-parallel-0",
        "p-kn-parallel-1",
    }
    contract = {key: entry.egress for key, entry in desired.contract.items() if entry.egress}
    filter0 = contract["Subscription/ns1/p-kn-parallel-filter-0"]
    assert filter0.topics == ("knative-messaging-kafka.ns1.p-kn-parallel",)
    assert (filter0.destination, filter0.reply.url) == (
        "http://f/even",
        "http://localhost:8080/channels/ns1/p-kn-parallel-0",
    )
    # Without a filter the event goes straight to the branch channel.
    filter1 = contract["Subscription/ns1/p-kn-parallel-filter-1"]
    assert (filter1.destination, filter1.reply.url) == (
        None,
        "http://localhost:8080/channels/ns1/p-kn-parallel-1",
    )
    branch0 = contract["Subscription/ns1/p-kn-parallel-0"]
    assert branch0.topics == ("knative-messaging-kafka.ns1.p-kn-parallel-0",)
    assert (branch0.destination, branch0.reply.url) == ("http://s/even", "http://r/even")
    branch1 = contract["Subscription/ns1/p-kn-parallel-1"]
    assert (branch1.destination, branch1.reply.url, branch1.delivery.retry) == (
        "http://s/all",
        "http://r/default",
        4,
    )
    # Each subscription has its own consumer group, even the filters that share the ingress channel.
    assert len({e.consumer_group for e in contract.values()}) == 4


def test_parallel_status_has_ingress_and_branch_statuses_and_the_ingress_address() -> None:
    status = _reconcile(parallel_doc("p", "ns1", _branches())).statuses[ResourceKey("Parallel", "ns1", "p")]
    assert status.ready
    assert status.address.url == "http://localhost:8080/channels/ns1/p-kn-parallel"
    assert status.ingressChannelStatus.channel.name == "p-kn-parallel"
    branch = status.branchStatuses[1]
    assert branch.filterSubscriptionStatus.subscription.name == "p-kn-parallel-filter-1"
    assert branch.filterChannelStatus.channel.name == "p-kn-parallel-1"
    assert branch.subscriberSubscriptionStatus.subscription.name == "p-kn-parallel-1"


def test_parallel_without_branches_is_rejected() -> None:
    with pytest.raises(ResourceInvalid, match=r"spec\.branches"):
        parse_resource(parallel_doc("p", "ns1", []))


# ---------------------------------------------------------------------------------------- ownership


def test_generated_children_come_back_from_the_store_unchanged() -> None:
    """Otherwise the local adapter would rewrite them on every pass."""
    documents = (
        sequence_doc("seq", "ns1", _steps("a", "b"), reply=ref("Broker", "b")),
        parallel_doc("p", "ns1", _branches()),
    )
    first = _reconcile(*documents)
    second = _reconcile(*documents, stored=_stored(first))
    assert set(second.children) == set(first.children)
    for key, child in second.children.items():
        assert _owned_part(child) == _owned_part(first.children[key])
        assert child.metadata.uid == first.children[key].metadata.uid
        assert child.metadata.generation == 1
    assert second.contract == first.contract


def test_changed_step_keeps_the_child_uid_and_bumps_its_generation() -> None:
    first = _reconcile(sequence_doc("seq", "ns1", _steps("a")))
    second = _reconcile(sequence_doc("seq", "ns1", _steps("changed")), stored=_stored(first))
    key = ResourceKey("Subscription", "ns1", "seq-kn-sequence-0")
    assert second.children[key].metadata.uid == first.children[key].metadata.uid
    assert second.children[key].metadata.generation == 2
    assert second.statuses[key].observedGeneration == 2
    assert second.contract[str(key)].egress.consumer_group == first.contract[str(key)].egress.consumer_group


def test_children_of_a_deleted_flow_are_forgotten_with_their_topics() -> None:
    first = _reconcile(sequence_doc("seq", "ns1", _steps("a", "b")))
    after_delete = reconcile(_stored(first), CONFIG)
    assert not after_delete.children
    assert not after_delete.topics
    assert not after_delete.contract
    assert not after_delete.statuses


def test_shorter_sequence_drops_the_children_of_removed_steps() -> None:
    first = _reconcile(sequence_doc("seq", "ns1", _steps("a", "b", "c")))
    shorter = _reconcile(sequence_doc("seq", "ns1", _steps("a")), stored=_stored(first))
    assert {k.name for k in shorter.children} == {"seq-kn-sequence-0"}
    assert set(shorter.topics) == {"knative-messaging-kafka.ns1.seq-kn-sequence-0"}


def test_flow_does_not_take_over_a_resource_it_does_not_own() -> None:
    desired = _reconcile(
        kafka_channel_doc("seq-kn-sequence-1", "ns1"), sequence_doc("seq", "ns1", _steps("a", "b"))
    )
    assert ResourceKey("KafkaChannel", "ns1", "seq-kn-sequence-1") not in desired.children
    ready = desired.statuses[ResourceKey("Sequence", "ns1", "seq")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "ChannelsNotReady")
    assert "already exists and is not owned by Sequence" in ready.message


def test_child_names_follow_knative() -> None:
    assert flows.sequence_channel_name("s", 2) == "s-kn-sequence-2"
    assert flows.parallel_channel_name("p") == "p-kn-parallel"
    assert flows.parallel_branch_channel_name("p", 1) == "p-kn-parallel-1"
    assert flows.parallel_filter_subscription_name("p", 1) == "p-kn-parallel-filter-1"
    assert flows.parallel_subscription_name("p", 1) == "p-kn-parallel-1"


@pytest.mark.parametrize("kind", ["Sequence", "Parallel"])
def test_an_in_memory_channel_template_makes_the_flow_channels_in_memory_channels(kind: str) -> None:
    template = {"apiVersion": "messaging.knative.dev/v1", "kind": "InMemoryChannel"}
    if kind == "Sequence":
        document = sequence_doc("flow", "ns1", _steps("a", "b"), channelTemplate=template)
    else:
        document = parallel_doc(
            "flow", "ns1", [{"subscriber": {"uri": "http://a"}}], channelTemplate=template
        )
    desired = _reconcile(document)
    channels = [k for k in desired.children if k.kind != "Subscription"]
    assert channels and {k.kind for k in channels} == {"InMemoryChannel"}
    refs = [desired.children[k].spec.channel for k in desired.children if k.kind == "Subscription"]
    assert {(r.apiVersion, r.kind) for r in refs} == {("messaging.knative.dev/v1", "InMemoryChannel")}
    # Each is a topic of its own; the flow is Ready and addressed at its first channel.
    assert all(t.startswith("knative-messaging-inmemory.ns1.flow-kn-") for t in desired.topics)
    ready = desired.statuses[ResourceKey(kind, "ns1", "flow")].condition("Ready")
    assert ready is not None and ready.status == "True", ready
    assert desired.statuses[ResourceKey(kind, "ns1", "flow")].address.url.startswith(
        "http://localhost:8080/inmemorychannels/ns1/flow-kn-"
    )
