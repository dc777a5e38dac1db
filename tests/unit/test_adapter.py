"""The adapter seam: publish_diff says what to write and tombstone; a pass applies the Desired in order."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from helpers import broker_doc, trigger_doc

from controller.adapter import Adapter, Observed, ReconcilePass, publish_diff
from controller.context import ControllerConfig
from keventing.contract import ContractEntry
from keventing.kafka.client import TopicSpec
from keventing.resources import Resource, ResourceKey, Status, parse_resource

CONFIG = ControllerConfig(ingress_url="http://localhost:8080")


def test_publish_diff_writes_new_and_changed_values_only() -> None:
    diff = publish_diff({"a": b"1", "b": b"2"}, {"a": b"1", "b": b"3", "c": b"4"})
    assert diff.write == {"b": b"3", "c": b"4"}
    assert diff.tombstone == ()


def test_publish_diff_tombstones_what_is_no_longer_wanted_in_key_order() -> None:
    diff = publish_diff({"z": b"1", "a": b"2", "m": b"3"}, {"m": b"3"})
    assert diff.write == {}
    assert diff.tombstone == ("a", "z")


def test_publish_diff_keeps_the_wanted_order_for_writes() -> None:
    assert list(publish_diff({}, {"b": 1, "a": 2, "c": 3}).write) == ["b", "a", "c"]


def test_publish_diff_of_equal_states_is_empty() -> None:
    diff = publish_diff({"a": b"1"}, {"a": b"1"})
    assert (diff.write, diff.tombstone) == ({}, ())


class InMemoryAdapter:
    """An adapter that records what it is asked to apply; topic creation fails for ``failing`` names."""

    def __init__(self, resources: list[Resource], failing: frozenset[str] = frozenset()) -> None:
        self.resources = resources
        self.failing = failing
        self.topic_errors: dict[str, str] = {}
        self.calls: list[str] = []
        self.statuses: dict[ResourceKey, Status] = {}

    async def observe(self) -> Observed:
        self.calls.append("observe")
        return Observed(self.resources, dict(self.topic_errors))

    async def check_connections(self, connections: Mapping[str, object]) -> bool:
        return False

    async def create_topics(self, topics: Mapping[str, TopicSpec]) -> bool:
        self.calls.append("create_topics")
        before = dict(self.topic_errors)
        self.topic_errors = {name: "no space" for name in topics if name in self.failing}
        return before != self.topic_errors

    async def write_children(self, children: Mapping[ResourceKey, Resource]) -> None:
        self.calls.append("write_children")

    async def publish_contract(self, contract: Mapping[str, ContractEntry]) -> None:
        self.calls.append("publish_contract")

    async def write_statuses(self, statuses: Mapping[ResourceKey, Status]) -> None:
        self.calls.append("write_statuses")
        self.statuses = dict(statuses)

    async def delete_topics(self, wanted: Mapping[str, TopicSpec]) -> None:
        self.calls.append("delete_topics")


def _resources() -> list[Resource]:
    return [parse_resource(broker_doc("b", "ns1")), parse_resource(trigger_doc("t", "ns1", "b", "http://s"))]


async def test_pass_applies_topics_then_children_contract_statuses_and_deletes_topics_last() -> None:
    adapter = InMemoryAdapter(_resources())
    checked: Adapter = adapter  # the in-memory adapter satisfies the seam
    desired = await ReconcilePass(checked, CONFIG).run()
    assert adapter.calls == [
        "observe",
        "create_topics",
        "write_children",
        "publish_contract",
        "write_statuses",
        "delete_topics",
    ]
    assert adapter.statuses[ResourceKey("Broker", "ns1", "b")].ready
    assert "Trigger/ns1/t" in desired.contract


async def test_pass_reconciles_again_when_a_topic_creation_fails() -> None:
    adapter = InMemoryAdapter(_resources(), failing=frozenset({"knative-broker-ns1-b"}))
    reconcile_pass = ReconcilePass(adapter, CONFIG)
    desired = await reconcile_pass.run()
    assert adapter.calls.count("observe") == 2
    assert not adapter.statuses[ResourceKey("Broker", "ns1", "b")].ready
    assert desired.contract == {}
    assert reconcile_pass.desired is desired


class ChildlessAdapter(InMemoryAdapter):
    """Writing the generated children fails (say one is in a namespace being deleted)."""

    async def write_children(self, children: Mapping[ResourceKey, Resource]) -> None:
        await super().write_children(children)
        raise RuntimeError("forbidden: namespace being terminated")


async def test_a_child_that_cannot_be_written_fails_the_pass_after_the_contract_and_statuses() -> None:
    adapter = ChildlessAdapter(_resources())
    reconcile_pass = ReconcilePass(adapter, CONFIG)
    with pytest.raises(RuntimeError, match="namespace being terminated"):
        await reconcile_pass.run()
    assert adapter.calls[-4:] == ["write_children", "publish_contract", "write_statuses", "delete_topics"]
    assert adapter.statuses[ResourceKey("Broker", "ns1", "b")].ready
    assert "Trigger/ns1/t" in reconcile_pass.desired.contract


class ContractlessAdapter(InMemoryAdapter):
    async def publish_contract(self, contract: Mapping[str, ContractEntry]) -> None:
        await super().publish_contract(contract)
        raise RuntimeError("contract topic away")


async def test_a_contract_that_cannot_be_published_writes_no_status() -> None:
    # A Ready status means the data plane has been told.
    adapter = ContractlessAdapter(_resources())
    with pytest.raises(RuntimeError, match="contract topic away"):
        await ReconcilePass(adapter, CONFIG).run()
    assert "write_statuses" not in adapter.calls
    assert "delete_topics" not in adapter.calls
    assert adapter.statuses == {}


class ArrivingAdapter(InMemoryAdapter):
    """Resources that arrive while a pass creates topics: the second observation holds one more Broker."""

    def __init__(self, first: list[Resource], later: list[Resource], failing: frozenset[str]) -> None:
        super().__init__(first, failing)
        self.later = later
        self.asked: list[set[str]] = []
        self.published: set[str] = set()

    async def observe(self) -> Observed:
        observed = await super().observe()
        self.resources = self.resources + self.later
        self.later = []
        return observed

    async def create_topics(self, topics: Mapping[str, TopicSpec]) -> bool:
        self.asked.append(set(topics))
        return await super().create_topics(topics)

    async def publish_contract(self, contract: Mapping[str, ContractEntry]) -> None:
        await super().publish_contract(contract)
        self.published = set(contract)


async def test_what_arrives_while_topics_are_created_has_its_topics_created_before_it_is_published() -> None:
    adapter = ArrivingAdapter(
        _resources(),
        [
            parse_resource(broker_doc("late", "ns1")),
            parse_resource(trigger_doc("t2", "ns1", "late", "http://s")),
        ],
        failing=frozenset({"knative-broker-ns1-b"}),
    )
    await ReconcilePass(adapter, CONFIG).run()
    assert "Trigger/ns1/t2" in adapter.published
    late_topic = "knative-broker-ns1-late"
    assert late_topic not in adapter.asked[0] and late_topic in adapter.asked[-1]
    assert adapter.calls.index("publish_contract") > len(adapter.asked)
