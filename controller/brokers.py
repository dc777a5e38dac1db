"""Broker and Trigger: a topic and an ingress per Broker, a consumer-group egress per Trigger."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from controller.addresses import audience, set_address
from controller.brokerdefaults import (
    KAFKA_BROKER_CONFIG,
    BrokerDefaults,
    BrokerDefaultsInvalid,
    broker_class,
    defaults_in,
)
from controller.conditions import READY, Conditions
from controller.connections import ConnectionUnresolvable, broker_connection
from controller.context import Context, Contribution, ControllerConfig, delivery_policy, identity
from controller.identities import CONDITION as OIDC_CONDITION
from controller.identities import oidc_identity
from controller.kafkafeatures import rendered
from controller.resolver import Resolver, Unresolvable
from controller.topicpolicy import broker_topics, name_taken, refuse_topic, trigger_groups
from keventing import naming
from keventing.contract import ContractEntry, DeliveryPolicy, Egress, FilterSpec, Ingress, Reply
from keventing.kafka.client import TOPIC_MAX_MESSAGE_BYTES, TopicSpec
from keventing.kafka.connection import KafkaConnection
from keventing.resources import (
    Broker,
    Condition,
    ConfigMap,
    DeliverySpec,
    KReference,
    Resource,
    ResourceKey,
    Status,
    Trigger,
)
from keventing.resources.eventing import PAUSED_ANNOTATION, TriggerStatus

S = TypeVar("S", bound=Status)


def reconcile_brokers(ctx: Context) -> Contribution:
    out = Contribution()
    topics = broker_topics(ctx)
    try:
        defaults, defaults_error = defaults_in(ctx.resources, ctx.config.system_namespace), None
    except BrokerDefaultsInvalid as err:
        defaults, defaults_error = BrokerDefaults(), str(err)
    for broker in ctx.of(Broker):
        claimed = broker_class(broker.metadata.annotations or {}, broker.namespace, defaults)
        if claimed not in ctx.config.broker_classes:
            out.addressable(broker.key, _unclaimed_broker(broker, claimed, ctx.config))
            continue
        topic = None
        topic_name = topics[broker.key]
        if broker.external_topic is not None:
            status = _reconcile_external_broker(broker, ctx)
        elif topic_name is None:
            status = _nameless_broker(broker, ctx)
        else:
            status, topic = _reconcile_broker(broker, ctx, topic_name, defaults, defaults_error)
            parsed = status.condition("ConfigParsed")
            if topic is None and parsed is not None and parsed.reason in UNKNOWN_CLUSTER:
                # Which cluster the topic is on is unknown until the Secret is back: keep it, touch nothing.
                out.topics[topic_name] = TopicSpec(topic_name, owner=str(broker.key), create=False)
            if topic is not None:
                out.topics[topic.name] = topic
        out.addressable(broker.key, status)
        if status.ready and topic_name is not None:
            out.contract[str(broker.key)] = ContractEntry(
                ingress=_broker_ingress(
                    broker, topic_name, ctx.config, topic.connection if topic is not None else None
                )
            )
    return out


def _nameless_broker(broker: Broker, ctx: Context) -> Status:
    """A Broker whose topic, as config-kafka-features' template names it, is another resource's."""
    name = rendered(
        ctx.config.kafka_features.broker_topic, broker, naming.broker_topic(broker.namespace, broker.name)
    )
    return _name_taken(
        Status,
        broker,
        "TopicReady",
        "TopicNameTaken",
        name_taken("topic", name),
        ["ConfigParsed", "Addressable"],
    )


def _name_taken(
    status_type: type[S], resource: Resource, condition: str, reason: str, message: str, others: list[str]
) -> S:
    """The status of a resource not reconciled because its name is another's: ``condition`` False first."""
    conditions = Conditions()
    conditions.false(condition, reason, message)
    status = status_type(observedGeneration=resource.metadata.generation)
    status.conditions = conditions.finish([condition, *others])
    return status


# The ConfigParsed reasons that leave a Broker's cluster unknown (controller.connections).
UNKNOWN_CLUSTER = frozenset({"SecretNotFound", "KafkaAuthInvalid"})


def reconcile_triggers(ctx: Context) -> Contribution:
    out = Contribution()
    resolver = ctx.resolver
    topics = broker_topics(ctx)
    groups = trigger_groups(ctx)
    try:
        defaults = defaults_in(ctx.resources, ctx.config.system_namespace)
    except BrokerDefaultsInvalid:
        defaults = BrokerDefaults()  # the Brokers that rely on it are not Ready, and say why
    for trigger in ctx.of(Trigger):
        group = groups[trigger.key]
        if group is None:
            out.statuses[trigger.key] = _groupless_trigger(trigger, ctx)
            continue
        status, egress = _reconcile_trigger(trigger, ctx, resolver, topics, group, defaults)
        out.statuses[trigger.key] = status
        if egress is not None:
            out.contract[str(trigger.key)] = ContractEntry(egress=egress)
    return out


# ------------------------------------------------------------------------------------------- names


def _groupless_trigger(trigger: Trigger, ctx: Context) -> TriggerStatus:
    """A Trigger whose consumer group, as config-kafka-features' template names it, is another Trigger's."""
    template = ctx.config.kafka_features.trigger_group
    name = rendered(template, trigger, naming.trigger_group(trigger.namespace, trigger.name))
    message = name_taken("consumer group", name)
    others = ["SubscriberResolved", "DeadLetterSinkResolved"]
    return _name_taken(TriggerStatus, trigger, "BrokerReady", "ConsumerGroupNameTaken", message, others)


# ------------------------------------------------------------------------------------------- Broker


def _reconcile_broker(
    broker: Broker, ctx: Context, topic_name: str, defaults: BrokerDefaults, defaults_error: str | None
) -> tuple[Status, TopicSpec | None]:
    config, topic_errors = ctx.config, ctx.topic_errors
    conditions = Conditions()
    status = Status(observedGeneration=broker.metadata.generation)
    try:
        if defaults_error is not None and (broker.spec.config is None or broker.spec.delivery is None):
            raise Unresolvable(defaults_error)
        topic = _broker_topic(
            broker, topic_name, broker.spec.config or defaults.config(broker.namespace), ctx
        )
    except ConnectionUnresolvable as err:
        conditions.false("ConfigParsed", err.reason, str(err))
        status.conditions = conditions.finish(["ConfigParsed", "TopicReady", "Addressable"])
        return status, None
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
        set_address(status, config, f"/{broker.namespace}/{broker.name}", broker)
    status.conditions = conditions.finish(["ConfigParsed", "TopicReady", "Addressable"])
    status.annotations = {naming.TOPIC_ANNOTATION: topic.name}
    if topic.connection is not None:
        status.annotations[naming.BOOTSTRAP_SERVERS_ANNOTATION] = topic.connection.bootstrap_servers
    return status, topic


def _unclaimed_broker(broker: Broker, claimed: str, config: ControllerConfig) -> Status:
    """A Broker of a class keventing does not claim (local mode: nothing else serves it, and it says so)."""
    classes = ", ".join(sorted(config.broker_classes)) or "none"
    message = (
        f"broker class {claimed!r} is not one keventing claims ({classes}; KEVENTING_BROKER_CLASSES): "
        "nothing serves this Broker"
    )
    status = Status(observedGeneration=broker.metadata.generation)
    status.conditions = [
        Condition(type="Ready", status="False", reason="BrokerClassNotClaimed", message=message)
    ]
    return status


def _reconcile_external_broker(broker: Broker, ctx: Context) -> Status:
    """A Broker on an existing topic (Knative's external-topic annotation): keventing neither creates nor
    deletes the topic, which must be one the Broker's namespace may use (:mod:`controller.topicpolicy`)."""
    topic = broker.external_topic
    assert topic is not None
    conditions = Conditions()
    status = Status(observedGeneration=broker.metadata.generation)
    conditions.true("ConfigParsed")
    refused = refuse_topic(ctx, broker.namespace, topic)
    if refused is not None:
        conditions.false("TopicReady", refused.reason, refused.message)
    else:
        conditions.true(
            "TopicReady", message=f"external topic {topic}: keventing neither creates nor deletes it"
        )
        conditions.true("Addressable")
        set_address(status, ctx.config, f"/{broker.namespace}/{broker.name}", broker)
    status.conditions = conditions.finish(["ConfigParsed", "TopicReady", "Addressable"])
    status.annotations = {naming.TOPIC_ANNOTATION: topic}
    return status


def broker_config_key(broker: Broker, ref: KReference) -> ResourceKey:
    """The ConfigMap a Broker's config reference names (in the Broker's namespace unless it names one)."""
    return ResourceKey(ConfigMap.KIND, ref.namespace or broker.namespace, ref.name)


def broker_delivery(broker: Broker, defaults: BrokerDefaults) -> DeliverySpec | None:
    """The Broker's delivery: its own, else its namespace's or the cluster's default (config-br-defaults)."""
    return broker.spec.delivery or defaults.delivery(broker.namespace)


def _broker_topic(broker: Broker, name: str, ref: KReference | None, ctx: Context) -> TopicSpec:
    config: ControllerConfig = ctx.config
    by_key: Mapping[ResourceKey, Resource] = ctx.resources
    data: Mapping[str, str] = {}
    config_namespace = broker.namespace
    if ref is not None:
        if ref.kind != "ConfigMap":
            raise Unresolvable(f"spec.config: kind {ref.kind!r} is not supported; reference a ConfigMap")
        key = broker_config_key(broker, ref)
        config_namespace = key.namespace
        found = by_key.get(key)
        if isinstance(found, ConfigMap):
            data = found.data
        elif key != ResourceKey(ConfigMap.KIND, config.system_namespace, KAFKA_BROKER_CONFIG):
            # The default config is part of the installation: without it, the controller's defaults apply.
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
    connection = broker_connection(data, config_namespace, by_key, config.kafka_bootstrap_servers)
    return TopicSpec(
        name,
        partitions,
        replication,
        topic_config,
        owner=str(broker.key),
        claim_existing=True,
        connection=connection,
    )


def _broker_ingress(
    broker: Broker, topic: str, config: ControllerConfig, connection: KafkaConnection | None
) -> Ingress:
    """``connection`` None: the services' own cluster (an external-topic Broker's, or one without its own)."""
    return Ingress(
        **identity(broker),
        audience=audience(broker),
        path=f"/{broker.namespace}/{broker.name}",
        topic=topic,
        event_types=config.event_type_auto_create,
        connection=connection,
    )


# ------------------------------------------------------------------------------------------ Trigger


def _reconcile_trigger(
    trigger: Trigger,
    ctx: Context,
    resolver: Resolver,
    broker_topics: Mapping[ResourceKey, str | None],
    group: str,
    defaults: BrokerDefaults,
) -> tuple[TriggerStatus, Egress | None]:
    conditions = Conditions()
    status = TriggerStatus(observedGeneration=trigger.metadata.generation)
    order = ["BrokerReady", "SubscriberResolved", "DeadLetterSinkResolved"]
    broker_key = ResourceKey("Broker", trigger.broker_namespace, trigger.broker_name)
    shown = (
        trigger.broker_name
        if not trigger.cross_namespace
        else f"{trigger.broker_namespace}/{trigger.broker_name}"
    )
    broker = ctx.resources.get(broker_key)
    broker_status = ctx.desired.statuses.get(broker_key)
    if trigger.cross_namespace and not ctx.config.cross_namespace_event_links:
        broker = None  # never read: the Trigger says what it needs instead
        conditions.false(
            "BrokerReady",
            "CrossNamespaceEventLinksDisabled",
            f'Broker "{shown}" is in another namespace: enable cross-namespace-event-links in the '
            f"config-features ConfigMap of {ctx.config.system_namespace} for a Trigger to use it",
        )
    elif not isinstance(broker, Broker) or broker_status is None:
        conditions.false("BrokerReady", "BrokerDoesNotExist", f'Broker "{shown}" does not exist')
    elif not broker_status.ready:
        conditions.false("BrokerReady", "BrokerNotReady", f'Broker "{shown}" is not ready')
    else:
        conditions.true("BrokerReady")
    try:
        status.subscriberUri = resolver.resolve(trigger.spec.subscriber, trigger.namespace)
        conditions.true("SubscriberResolved")
    except Unresolvable as err:
        conditions.false("SubscriberResolved", "Unable to get the Subscriber's URI", str(err))
    delivery_spec = trigger.spec.delivery or (
        broker_delivery(broker, defaults) if isinstance(broker, Broker) else None
    )
    delivery: DeliveryPolicy | None = None
    try:
        delivery = delivery_policy(delivery_spec, ctx.config.default_delivery, resolver, trigger.namespace)
        status.deadLetterSinkUri = delivery.dead_letter_url
        conditions.true("DeadLetterSinkResolved")
    except Unresolvable as err:
        conditions.false("DeadLetterSinkResolved", "Unable to get the dead letter sink's URI", str(err))
    oidc = oidc_identity(trigger, ctx.config, conditions)
    if oidc is not None:
        order.append(OIDC_CONDITION)
        status.auth = oidc.auth
    status.conditions = conditions.finish(order)
    topic = broker_topics.get(broker_key)
    if not status.ready or not isinstance(broker, Broker) or delivery is None or topic is None:
        return status, None
    # The Broker's own cluster (its kafka-broker-config's), where its topic is and replies go.
    broker_entry = ctx.desired.contract.get(str(broker.key))
    connection = broker_entry.ingress.connection if broker_entry and broker_entry.ingress else None
    # Which group and topic serve it (kev's readiness check waits for the group's position on that topic).
    status.annotations = {naming.GROUP_ANNOTATION: group, naming.TOPIC_ANNOTATION: topic}
    if connection is not None:
        status.annotations[naming.BOOTSTRAP_SERVERS_ANNOTATION] = connection.bootstrap_servers
    ca_certs, audience = resolver.trust(trigger.spec.subscriber, trigger.namespace)
    egress = Egress(
        **identity(trigger),
        topics=(topic,),
        consumer_group=group,
        destination=status.subscriberUri,
        destination_ca_certs=ca_certs,
        destination_audience=audience,
        identity=oidc.account if oidc is not None else None,
        reply=Reply(strategy="topic", topic=topic),
        filter=FilterSpec(
            attributes=trigger.spec.filter.attributes if trigger.spec.filter else None,
            filters=trigger.spec.filters or None,
        ),
        delivery=delivery,
        delivery_order="ordered" if trigger.delivery_order == "ordered" else "unordered",
        connection=connection,
        paused=trigger.paused,
    )
    if trigger.paused:
        # Published all the same (its group must stay, with its offsets), but not Ready: nothing is delivered.
        status.conditions = [
            Condition(
                type=READY,
                status="False",
                reason="Paused",
                message=f"paused by the {PAUSED_ANNOTATION} annotation: events wait on the Broker's topic",
            ),
            *status.conditions[1:],
        ]
    return status, egress
