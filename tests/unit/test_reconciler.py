"""The reconciler is a pure function: resources in, topics + contract + statuses out."""

from __future__ import annotations

import pytest
from helpers import broker_doc, kafka_channel_doc, subscription_doc, trigger_doc

from controller import channels
from controller.conditions import Conditions
from controller.context import Context, Contribution
from controller.reconciler import PHASES, ControllerConfig, merge, reconcile
from keventing.contract import ContractEntry
from keventing.kafka.client import TopicSpec
from keventing.resources import ResourceInvalid, ResourceKey, Status, parse_resource
from keventing.resources.base import Address
from keventing.resources.messaging import ChannelableStatus, SubscriberStatus

CONFIG = ControllerConfig(ingress_url="http://localhost:8080")


def _reconcile(*documents: dict, topic_errors: dict | None = None):
    return reconcile([parse_resource(d) for d in documents], CONFIG, topic_errors)


def test_broker_gets_knative_topic_address_and_ingress() -> None:
    desired = _reconcile(broker_doc("default", "ns1"))
    topic = desired.topics["knative-broker-ns1-default"]
    assert (topic.partitions, topic.replication_factor) == (10, 1)
    status = desired.statuses[ResourceKey("Broker", "ns1", "default")]
    assert status.ready
    assert status.address.url == "http://localhost:8080/ns1/default"
    ingress = desired.contract["Broker/ns1/default"].ingress
    assert ingress.path == "/ns1/default"
    assert ingress.topic == "knative-broker-ns1-default"


def test_broker_config_map_sets_partitions_and_replication() -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "my-config", "namespace": "ns1"},
        "data": {"default.topic.partitions": "4", "default.topic.replication.factor": "1"},
    }
    broker = broker_doc("b", "ns1", config={"apiVersion": "v1", "kind": "ConfigMap", "name": "my-config"})
    topic = _reconcile(config_map, broker).topics["knative-broker-ns1-b"]
    assert topic.partitions == 4


def test_broker_with_missing_config_map_is_not_ready() -> None:
    broker = broker_doc("b", "ns1", config={"apiVersion": "v1", "kind": "ConfigMap", "name": "absent"})
    desired = _reconcile(broker)
    ready = desired.statuses[ResourceKey("Broker", "ns1", "b")].condition("Ready")
    assert ready.status == "False"
    assert "absent" in ready.message
    assert not desired.topics and not desired.contract


def test_failed_topic_creation_makes_broker_not_ready() -> None:
    desired = _reconcile(broker_doc("b", "ns1"), topic_errors={"knative-broker-ns1-b": "no space"})
    ready = desired.statuses[ResourceKey("Broker", "ns1", "b")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "TopicCreationFailed")
    assert "Broker/ns1/b" not in desired.contract


def test_trigger_with_missing_broker_is_not_ready() -> None:
    desired = _reconcile(trigger_doc("t", "ns1", "missing", "http://sink"))
    ready = desired.statuses[ResourceKey("Trigger", "ns1", "t")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "BrokerDoesNotExist")
    assert "Trigger/ns1/t" not in desired.contract


def test_trigger_egress_uses_knative_group_and_replies_to_the_broker_topic() -> None:
    desired = _reconcile(
        broker_doc("b", "ns1"),
        trigger_doc("t", "ns1", "b", "http://sink/path", filter={"attributes": {"type": "x"}}),
    )
    status = desired.statuses[ResourceKey("Trigger", "ns1", "t")]
    assert status.ready
    assert status.subscriberUri == "http://sink/path"
    egress = desired.contract["Trigger/ns1/t"].egress
    assert egress.consumer_group == "knative-trigger-ns1-t"
    assert egress.topics == ("knative-broker-ns1-b",)
    assert egress.reply.strategy == "topic" and egress.reply.topic == "knative-broker-ns1-b"
    assert egress.filter.attributes == {"type": "x"}
    assert egress.delivery_order == "unordered"


def test_paused_trigger_keeps_its_egress_paused_and_says_why_it_is_not_ready() -> None:
    paused = {"keventing.knative.dev/paused": "true"}
    desired = _reconcile(
        broker_doc("b", "ns1"), trigger_doc("t", "ns1", "b", "http://sink", annotations=paused)
    )
    status = desired.statuses[ResourceKey("Trigger", "ns1", "t")]
    ready = status.condition("Ready")
    assert (ready.status, ready.reason) == ("False", "Paused")
    assert status.condition("SubscriberResolved").status == "True"
    egress = desired.contract["Trigger/ns1/t"].egress
    assert egress.paused and egress.consumer_group == "knative-trigger-ns1-t"
    resumed = _reconcile(broker_doc("b", "ns1"), trigger_doc("t", "ns1", "b", "http://sink"))
    assert resumed.statuses[ResourceKey("Trigger", "ns1", "t")].ready
    assert not resumed.contract["Trigger/ns1/t"].egress.paused


def test_paused_annotation_must_be_true_or_false() -> None:
    doc = trigger_doc("t", "ns1", "b", "http://sink", annotations={"keventing.knative.dev/paused": "yes"})
    with pytest.raises(ResourceInvalid, match="keventing.knative.dev/paused"):
        parse_resource(doc)


def test_trigger_delivery_replaces_broker_delivery() -> None:
    broker = broker_doc("b", "ns1", delivery={"retry": 5, "backoffPolicy": "linear", "backoffDelay": "PT2S"})
    plain = trigger_doc("plain", "ns1", "b", "http://sink")
    own = trigger_doc("own", "ns1", "b", "http://sink", delivery={"retry": 1, "timeout": "PT3S"})
    desired = _reconcile(broker, plain, own)
    inherited = desired.contract["Trigger/ns1/plain"].egress.delivery
    assert (inherited.retry, inherited.backoff_policy, inherited.backoff_delay) == (5, "linear", 2.0)
    replaced = desired.contract["Trigger/ns1/own"].egress.delivery
    assert (replaced.retry, replaced.timeout) == (1, 3.0)


def test_subscriber_ref_to_a_broker_resolves_to_its_address() -> None:
    trigger = trigger_doc("t", "ns1", "a", "unused")
    trigger["spec"]["subscriber"] = {
        "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}
    }
    desired = _reconcile(broker_doc("a", "ns1"), broker_doc("b", "ns1"), trigger)
    assert desired.statuses[ResourceKey("Trigger", "ns1", "t")].subscriberUri == "http://localhost:8080/ns1/b"


def test_dead_letter_sink_that_cannot_be_resolved_makes_trigger_not_ready() -> None:
    trigger = trigger_doc(
        "t",
        "ns1",
        "b",
        "http://sink",
        delivery={"deadLetterSink": {"ref": {"kind": "Broker", "name": "nope"}}},
    )
    ready = (
        _reconcile(broker_doc("b", "ns1"), trigger)
        .statuses[ResourceKey("Trigger", "ns1", "t")]
        .condition("Ready")
    )
    assert ready.status == "False"
    assert "nope" in ready.message


def test_ordered_annotation_reaches_the_contract() -> None:
    trigger = trigger_doc(
        "t", "ns1", "b", "http://sink", annotations={"kafka.eventing.knative.dev/delivery.order": "ordered"}
    )
    assert (
        _reconcile(broker_doc("b", "ns1"), trigger).contract["Trigger/ns1/t"].egress.delivery_order
        == "ordered"
    )


def test_stored_trigger_with_an_invalid_filter_is_not_ready_and_says_why() -> None:
    trigger = trigger_doc("t", "ns1", "b", "http://sink", filters=[{"exact": {"type": "a", "source": "b"}}])
    stored = parse_resource(trigger, semantics=False)  # as if it had been stored before a stricter validation
    desired = reconcile([parse_resource(broker_doc("b", "ns1")), stored], CONFIG)
    ready = desired.statuses[ResourceKey("Trigger", "ns1", "t")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert "spec.filters[0].exact" in ready.message
    assert "Trigger/ns1/t" not in desired.contract


def test_internal_ingress_url_is_what_the_data_plane_uses_and_users_still_see_the_public_one() -> None:
    config = ControllerConfig(
        ingress_url="http://localhost:8080", internal_ingress_url="http://receiver:8080"
    )
    trigger = trigger_doc("t", "ns1", "a", "unused", delivery={"deadLetterSink": {"uri": "http://dls/x"}})
    trigger["spec"]["subscriber"] = {
        "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}
    }
    documents = [broker_doc("a", "ns1"), broker_doc("b", "ns1"), trigger]
    desired = reconcile([parse_resource(d) for d in documents], config)
    assert desired.statuses[ResourceKey("Trigger", "ns1", "t")].subscriberUri == "http://localhost:8080/ns1/b"
    egress = desired.contract["Trigger/ns1/t"].egress
    assert egress.destination == "http://receiver:8080/ns1/b"
    assert egress.delivery.dead_letter_url == "http://dls/x"  # not on the ingress: unchanged
    assert desired.statuses[ResourceKey("Broker", "ns1", "b")].address.url == "http://localhost:8080/ns1/b"


def test_in_strict_mode_the_data_plane_uses_the_internal_https_url_with_the_ingress_ca() -> None:
    config = ControllerConfig(
        ingress_https_url="https://events.example",
        internal_ingress_https_url="https://receiver:8443",
        ingress_ca_certs="CA PEM",
        transport_encryption="strict",
    )
    trigger = trigger_doc("t", "ns1", "a", "unused")
    trigger["spec"]["subscriber"] = {
        "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}
    }
    documents = [broker_doc("a", "ns1"), broker_doc("b", "ns1"), trigger]
    desired = reconcile([parse_resource(d) for d in documents], config)
    assert (
        desired.statuses[ResourceKey("Trigger", "ns1", "t")].subscriberUri == "https://events.example/ns1/b"
    )
    egress = desired.contract["Trigger/ns1/t"].egress
    assert (egress.destination, egress.destination_ca_certs) == ("https://receiver:8443/ns1/b", "CA PEM")


# ------------------------------------------------------------------------------------ phase merge


def _context(*documents: dict) -> Context:
    resources = [parse_resource(d) for d in documents]
    return Context({r.key: r for r in resources}, CONFIG, {})


def test_every_phase_returns_its_contribution_and_leaves_the_context_alone() -> None:
    ctx = _context(broker_doc("b", "ns1"), trigger_doc("t", "ns1", "b", "http://s"))
    for phase in PHASES:
        before = (dict(ctx.desired.statuses), dict(ctx.desired.contract), dict(ctx.addresses))
        contribution = phase(ctx)
        assert isinstance(contribution, Contribution)
        assert (dict(ctx.desired.statuses), dict(ctx.desired.contract), dict(ctx.addresses)) == before
        merge(ctx, contribution)
    assert ctx.desired.statuses[ResourceKey("Trigger", "ns1", "t")].ready


def test_merge_adds_a_contribution_to_the_desired_state_and_the_addresses() -> None:
    ctx = _context(broker_doc("b", "ns1"))
    key = ResourceKey("Broker", "ns1", "b")
    contribution = Contribution()
    contribution.topics["t"] = TopicSpec("t", 1, 1)
    contribution.contract["Broker/ns1/b"] = ContractEntry()
    contribution.addressable(key, Status(address=Address(url="http://x"), conditions=Conditions().finish([])))
    merge(ctx, contribution)
    assert set(ctx.desired.topics) == {"t"}
    assert set(ctx.desired.contract) == {"Broker/ns1/b"}
    assert ctx.desired.statuses[key].ready
    assert ctx.addresses[key] == "http://x"


def test_address_of_a_resource_that_is_not_ready_is_none() -> None:
    contribution = Contribution()
    key = ResourceKey("Broker", "ns1", "b")
    contribution.addressable(key, Status(address=Address(url="http://x")))
    assert contribution.addresses[key] is None


def test_merged_children_replace_stored_copies_and_forgotten_ones_leave_the_pass() -> None:
    ctx = _context(kafka_channel_doc("kept", "ns1"), kafka_channel_doc("gone", "ns1"))
    child = parse_resource(kafka_channel_doc("kept", "ns1", numPartitions=3))
    contribution = Contribution()
    contribution.children[child.key] = child
    contribution.forgotten.add(ResourceKey("KafkaChannel", "ns1", "gone"))
    merge(ctx, contribution)
    assert ctx.resources == {child.key: child}
    assert ctx.desired.children == {child.key: child}


def test_merged_subscribers_are_listed_only_by_channel_statuses() -> None:
    ctx = _context()
    channel = ResourceKey("KafkaChannel", "ns1", "c")
    broker = ResourceKey("Broker", "ns1", "b")
    ctx.desired.statuses[channel] = ChannelableStatus()
    ctx.desired.statuses[broker] = Status()
    entry = SubscriberStatus(uid="u", ready="True")
    contribution = Contribution()
    contribution.subscribers[channel] = [entry]
    contribution.subscribers[broker] = [entry]
    contribution.subscribers[ResourceKey("KafkaChannel", "ns1", "absent")] = [entry]
    merge(ctx, contribution)
    channel_status = ctx.desired.statuses[channel]
    assert isinstance(channel_status, ChannelableStatus)
    assert channel_status.subscribers == [entry]
    assert ResourceKey("KafkaChannel", "ns1", "absent") not in ctx.desired.statuses


def test_subscription_phase_reports_to_its_channel_through_its_contribution() -> None:
    ctx = _context(
        kafka_channel_doc("c", "ns1"), subscription_doc("s", "ns1", "c", subscriber={"uri": "http://s"})
    )
    for phase in PHASES[: PHASES.index(channels.reconcile_subscriptions)]:
        merge(ctx, phase(ctx))
    channel = ResourceKey("KafkaChannel", "ns1", "c")
    contribution = channels.reconcile_subscriptions(ctx)
    assert ctx.desired.statuses[channel].subscribers == []
    assert [s.ready for s in contribution.subscribers[channel]] == ["True"]
    merge(ctx, contribution)
    assert [s.ready for s in ctx.desired.statuses[channel].subscribers] == ["True"]
