"""Reconciliation as a pure function: resources in → topics, contract entries and statuses out.

The adapters (local store, Kubernetes) feed it what they read and apply what it returns; nothing here does
I/O, so every rule is unit-tested with plain objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from controller.resolver import Resolver, Unresolvable
from keventing import naming
from keventing.contract import ContractEntry, DeliveryPolicy, Egress, FilterSpec, Ingress, Reply
from keventing.durations import parse_duration
from keventing.kafka.client import TOPIC_MAX_MESSAGE_BYTES, TopicSpec
from keventing.resources import (
    Broker,
    Condition,
    ConfigMap,
    DeliverySpec,
    Resource,
    ResourceKey,
    Status,
    Trigger,
)
from keventing.resources.base import Address
from keventing.resources.eventing import TriggerStatus

R = TypeVar("R", bound=Resource)
DEFAULT_BROKER_CONFIG = ResourceKey("ConfigMap", "knative-eventing", "kafka-broker-config")


@dataclass(frozen=True)
class ControllerConfig:
    ingress_url: str = "http://localhost:8080"
    default_partitions: int = 10
    default_replication_factor: int = 1
    # Knative's config-br-defaults: what a Broker without spec.delivery gets.
    default_delivery: DeliveryPolicy = DeliveryPolicy(
        retry=10, backoff_policy="exponential", backoff_delay=0.2
    )
    event_type_auto_create: bool = True


@dataclass
class Desired:
    topics: dict[str, TopicSpec] = field(default_factory=dict)
    contract: dict[str, ContractEntry] = field(default_factory=dict)
    statuses: dict[ResourceKey, Status] = field(default_factory=dict)


def reconcile(
    resources: Iterable[Resource],
    config: ControllerConfig,
    topic_errors: Mapping[str, str] | None = None,
) -> Desired:
    """Compute everything the data plane needs from the resources; ``topic_errors`` are failed creations."""
    by_key = {r.key: r for r in resources}
    topic_errors = topic_errors or {}
    desired = Desired()
    addresses: dict[ResourceKey, str | None] = {}

    for broker in _of(by_key, Broker):
        status, topic = _reconcile_broker(broker, by_key, config, topic_errors)
        desired.statuses[broker.key] = status
        addresses[broker.key] = status.address.url if status.address and status.ready else None
        if topic is not None:
            desired.topics[topic.name] = topic
            if status.ready:
                desired.contract[str(broker.key)] = ContractEntry(
                    ingress=_broker_ingress(broker, topic, config)
                )

    resolver = Resolver(addresses, by_key)
    for trigger in _of(by_key, Trigger):
        trigger_status, egress = _reconcile_trigger(trigger, by_key, desired, resolver, config)
        desired.statuses[trigger.key] = trigger_status
        if egress is not None:
            desired.contract[str(trigger.key)] = ContractEntry(egress=egress)
    return desired


def _of(by_key: Mapping[ResourceKey, Resource], cls: type[R]) -> list[R]:
    return [r for r in by_key.values() if isinstance(r, cls)]


# ------------------------------------------------------------------------------------------- Broker


def _reconcile_broker(
    broker: Broker,
    by_key: Mapping[ResourceKey, Resource],
    config: ControllerConfig,
    topic_errors: Mapping[str, str],
) -> tuple[Status, TopicSpec | None]:
    conditions = Conditions()
    status = Status(observedGeneration=broker.metadata.generation)
    try:
        topic = _broker_topic(broker, by_key, config)
    except Unresolvable as err:
        conditions.false(
            "ConfigParsed", "ConfigMapNotFound" if "exist" in str(err) else "ConfigInvalid", str(err)
        )
        status.conditions = conditions.finish(["ConfigParsed", "TopicReady", "Addressable"])
        return status, None
    conditions.true("ConfigParsed")
    if topic.name in topic_errors:
        conditions.false("TopicReady", "TopicCreationFailed", topic_errors[topic.name])
    else:
        conditions.true("TopicReady", message=f"topic {topic.name} created")
        conditions.true("Addressable")
        status.address = Address(url=f"{config.ingress_url}/{broker.namespace}/{broker.name}")
    status.conditions = conditions.finish(["ConfigParsed", "TopicReady", "Addressable"])
    status.annotations = {"kafka.eventing.knative.dev/topic": topic.name}
    return status, topic


def _broker_topic(
    broker: Broker, by_key: Mapping[ResourceKey, Resource], config: ControllerConfig
) -> TopicSpec:
    data: Mapping[str, str] = {}
    ref = broker.spec.config
    if ref is not None:
        if ref.kind != "ConfigMap":
            raise Unresolvable(f"spec.config: kind {ref.kind!r} is not supported; reference a ConfigMap")
        key = ResourceKey("ConfigMap", ref.namespace or broker.namespace, ref.name)
        found = by_key.get(key)
        if isinstance(found, ConfigMap):
            data = found.data
        elif key != DEFAULT_BROKER_CONFIG:  # the default config is part of the installation
            raise Unresolvable(f'ConfigMap "{ref.name}" in namespace "{key.namespace}" does not exist')
    try:
        partitions = int(data.get("default.topic.partitions", config.default_partitions))
        replication = int(data.get("default.topic.replication.factor", config.default_replication_factor))
    except ValueError as err:
        raise Unresolvable(f"broker config: {err}") from None
    if partitions < 1 or replication < 1:
        raise Unresolvable("broker config: partitions and replication factor must be at least 1")
    prefix = "default.topic.config."
    topic_config = {"max.message.bytes": TOPIC_MAX_MESSAGE_BYTES}
    topic_config.update({k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)})
    return TopicSpec(
        naming.broker_topic(broker.namespace, broker.name), partitions, replication, topic_config
    )


def _broker_ingress(broker: Broker, topic: TopicSpec, config: ControllerConfig) -> Ingress:
    return Ingress(
        id=str(broker.key),
        kind="Broker",
        namespace=broker.namespace,
        name=broker.name,
        path=f"/{broker.namespace}/{broker.name}",
        topic=topic.name,
        event_types=config.event_type_auto_create,
    )


# ------------------------------------------------------------------------------------------ Trigger


def _reconcile_trigger(
    trigger: Trigger,
    by_key: Mapping[ResourceKey, Resource],
    desired: Desired,
    resolver: Resolver,
    config: ControllerConfig,
) -> tuple[TriggerStatus, Egress | None]:
    conditions = Conditions()
    status = TriggerStatus(observedGeneration=trigger.metadata.generation)
    order = ["BrokerReady", "SubscriberResolved", "DeadLetterSinkResolved"]
    broker_key = ResourceKey("Broker", trigger.namespace, trigger.spec.broker)
    broker = by_key.get(broker_key)
    broker_status = desired.statuses.get(broker_key)
    if not isinstance(broker, Broker) or broker_status is None:
        conditions.false(
            "BrokerReady", "BrokerDoesNotExist", f'Broker "{trigger.spec.broker}" does not exist'
        )
    elif not broker_status.ready:
        conditions.false("BrokerReady", "BrokerNotReady", f'Broker "{trigger.spec.broker}" is not ready')
    else:
        conditions.true("BrokerReady")
    try:
        status.subscriberUri = resolver.resolve(trigger.spec.subscriber, trigger.namespace)
        conditions.true("SubscriberResolved")
    except Unresolvable as err:
        conditions.false("SubscriberResolved", "Unable to get the Subscriber's URI", str(err))
    delivery_spec = trigger.spec.delivery or (broker.spec.delivery if isinstance(broker, Broker) else None)
    delivery: DeliveryPolicy | None = None
    try:
        delivery = delivery_policy(delivery_spec, config.default_delivery, resolver, trigger.namespace)
        status.deadLetterSinkUri = delivery.dead_letter_url
        conditions.true("DeadLetterSinkResolved")
    except Unresolvable as err:
        conditions.false("DeadLetterSinkResolved", "Unable to get the dead letter sink's URI", str(err))
    status.conditions = conditions.finish(order)
    if not status.ready or not isinstance(broker, Broker) or delivery is None:
        return status, None
    egress = Egress(
        id=str(trigger.key),
        kind="Trigger",
        namespace=trigger.namespace,
        name=trigger.name,
        uid=trigger.metadata.uid or str(trigger.key),
        topic=naming.broker_topic(broker.namespace, broker.name),
        consumer_group=naming.trigger_group(trigger.namespace, trigger.name),
        destination=status.subscriberUri,
        reply=Reply(strategy="topic", topic=naming.broker_topic(broker.namespace, broker.name)),
        filter=FilterSpec(
            attributes=trigger.spec.filter.attributes if trigger.spec.filter else None,
            filters=trigger.spec.filters or None,
        ),
        delivery=delivery,
        delivery_order="ordered" if trigger.delivery_order == "ordered" else "unordered",
    )
    return status, egress


def delivery_policy(
    spec: DeliverySpec | None, default: DeliveryPolicy, resolver: Resolver, namespace: str
) -> DeliveryPolicy:
    """Resolve a DeliverySpec; fields it leaves out keep their default."""
    if spec is None:
        return default
    return DeliveryPolicy(
        retry=spec.retry if spec.retry is not None else 0,
        backoff_policy=spec.backoffPolicy or default.backoff_policy,
        backoff_delay=parse_duration(spec.backoffDelay) if spec.backoffDelay else default.backoff_delay,
        timeout=parse_duration(spec.timeout) if spec.timeout else default.timeout,
        retry_after_max=parse_duration(spec.retryAfterMax) if spec.retryAfterMax else None,
        dead_letter_url=resolver.resolve(spec.deadLetterSink, namespace) if spec.deadLetterSink else None,
    )


# --------------------------------------------------------------------------------------- Conditions


class Conditions:
    """Collects a resource's conditions and derives Ready from them, the way Knative's ConditionSet does."""

    def __init__(self) -> None:
        self._items: dict[str, Condition] = {}

    def true(self, type_: str, reason: str | None = None, message: str | None = None) -> None:
        self._items[type_] = Condition(type=type_, status="True", reason=reason, message=message)

    def false(self, type_: str, reason: str, message: str) -> None:
        self._items[type_] = Condition(type=type_, status="False", reason=reason, message=message)

    def unknown(self, type_: str, reason: str, message: str) -> None:
        self._items[type_] = Condition(type=type_, status="Unknown", reason=reason, message=message)

    def finish(self, dependents: list[str]) -> list[Condition]:
        """Fill missing dependents as Unknown and compute Ready from the first that is not True."""
        out = []
        for type_ in dependents:
            out.append(
                self._items.get(type_) or Condition(type=type_, status="Unknown", reason="NotReconciled")
            )
        blocking = next((c for c in out if c.status != "True"), None)
        if blocking is None:
            ready = Condition(type="Ready", status="True")
        else:
            ready = Condition(
                type="Ready", status=blocking.status, reason=blocking.reason, message=blocking.message
            )
        return [ready, *out]
