"""Knative-style conditions: Ready follows its dependents, propagation names the dependency, transitions keep time."""

from __future__ import annotations

from controller.conditions import Conditions, invalid, keep_transition_times, ready_of
from keventing.resources import Condition, KafkaChannel, Status
from keventing.resources.base import ObjectMeta
from keventing.resources.messaging import KafkaChannelSpec


def _by_type(conditions: list[Condition]) -> dict[str, Condition]:
    return {c.type: c for c in conditions}


def test_ready_is_true_when_every_dependent_is_true() -> None:
    conditions = Conditions()
    conditions.true("TopicReady")
    conditions.true("Addressable")
    ready, *rest = conditions.finish(["TopicReady", "Addressable"])
    assert (ready.type, ready.status) == ("Ready", "True")
    assert [c.type for c in rest] == ["TopicReady", "Addressable"]


def test_ready_takes_reason_and_message_of_the_first_dependent_not_true() -> None:
    conditions = Conditions()
    conditions.true("ConfigParsed")
    conditions.false("TopicReady", "TopicCreationFailed", "no space")
    conditions.unknown("Addressable", "NoAddress", "later")
    ready = conditions.finish(["ConfigParsed", "TopicReady", "Addressable"])[0]
    assert (ready.status, ready.reason, ready.message) == ("False", "TopicCreationFailed", "no space")


def test_missing_dependent_is_unknown_not_reconciled() -> None:
    conditions = Conditions()
    conditions.true("SinkProvided")
    out = _by_type(conditions.finish(["SinkProvided", "Deployed"]))
    assert (out["Deployed"].status, out["Deployed"].reason) == ("Unknown", "NotReconciled")
    assert (out["Ready"].status, out["Ready"].reason) == ("Unknown", "NotReconciled")


def test_propagated_condition_names_the_dependency_and_says_why() -> None:
    conditions = Conditions()
    not_ready = Condition(type="Ready", status="False", reason="TopicCreationFailed", message="no space")
    conditions.propagate("ChannelReady", not_ready, "ChannelNotReady", 'KafkaChannel "c" is not ready')
    unknown = Condition(type="Ready", status="Unknown", reason="NotReconciled")
    conditions.propagate("BackingChannelReady", unknown, "BackingChannelNotReady", "backing")
    conditions.propagate("Addressable", Condition(type="Ready", status="True"), "unused", "unused")
    out = _by_type(conditions.finish(["ChannelReady", "BackingChannelReady", "Addressable"]))
    assert (out["ChannelReady"].status, out["ChannelReady"].reason) == ("False", "ChannelNotReady")
    assert out["ChannelReady"].message == 'KafkaChannel "c" is not ready: no space'
    assert out["BackingChannelReady"].status == "Unknown"
    assert out["BackingChannelReady"].message == "backing: NotReconciled"
    assert (out["Addressable"].status, out["Addressable"].reason) == ("True", None)


def _channel(name: str) -> KafkaChannel:
    return KafkaChannel(
        apiVersion="messaging.knative.dev/v1beta1",
        kind="KafkaChannel",
        metadata=ObjectMeta(name=name, namespace="ns1"),
        spec=KafkaChannelSpec(),
    )


def test_aggregate_prefers_a_false_child_over_an_unknown_one() -> None:
    conditions = Conditions()
    readiness = [
        (_channel("a"), Condition(type="Ready", status="True")),
        (_channel("b"), Condition(type="Ready", status="Unknown", reason="Pending")),
        (_channel("c"), Condition(type="Ready", status="False", reason="Broken", message="boom")),
    ]
    conditions.aggregate("ChannelsReady", "ChannelsNotReady", readiness)
    channels_ready = _by_type(conditions.finish(["ChannelsReady"]))["ChannelsReady"]
    assert (channels_ready.status, channels_ready.reason) == ("False", "ChannelsNotReady")
    assert channels_ready.message == 'KafkaChannel "c" is not ready: boom'


def test_aggregate_of_ready_children_is_true() -> None:
    conditions = Conditions()
    conditions.aggregate(
        "ChannelsReady", "ChannelsNotReady", [(_channel("a"), Condition(type="Ready", status="True"))]
    )
    assert conditions.finish(["ChannelsReady"])[0].status == "True"


def test_invalid_resource_is_not_ready_with_invalid_spec() -> None:
    [ready] = invalid("spec.broker is required")
    assert (ready.type, ready.status, ready.reason, ready.message) == (
        "Ready",
        "False",
        "InvalidSpec",
        "spec.broker is required",
    )


def test_ready_of_drops_the_transition_time() -> None:
    status = Status(
        conditions=[Condition(type="Ready", status="True", lastTransitionTime="2026-01-01T00:00:00Z")]
    )
    ready = ready_of(status)
    assert ready is not None and ready.status == "True" and ready.lastTransitionTime is None
    assert ready_of(None) is None
    assert ready_of(Status()) is None


def test_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    then, now = "2026-01-01T00:00:00Z", "2026-02-02T00:00:00Z"
    previous = [
        Condition(type="Ready", status="False", lastTransitionTime=then),
        Condition(type="TopicReady", status="True", lastTransitionTime=then),
    ]
    status = Status(
        conditions=[
            Condition(type="Ready", status="True"),
            Condition(type="TopicReady", status="True"),
            Condition(type="Addressable", status="True"),
        ]
    )
    kept = _by_type(keep_transition_times(status, previous, now).conditions)
    assert kept["Ready"].lastTransitionTime == now  # changed status
    assert kept["TopicReady"].lastTransitionTime == then  # same status
    assert kept["Addressable"].lastTransitionTime == now  # new condition
    assert status.conditions[0].lastTransitionTime is None  # the input is not edited
