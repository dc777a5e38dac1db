"""Channels and Subscriptions: a topic and an ingress per KafkaChannel or InMemoryChannel, a consumer-group
egress per Subscription.

A Channel is Knative's generic front: it creates a backing channel of the same name, of the kind its
channelTemplate names (KafkaChannel, the default, or InMemoryChannel: both backed by a Kafka topic, see
:mod:`keventing.resources.messaging`), and reports that channel's state and address. Sequences and Parallels
make their channels the same way.
A Subscription lists itself in its channels' ``status.subscribers`` through its contribution, not by editing
their statuses.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping

from controller import children
from controller.addresses import audience, set_address
from controller.conditions import Conditions, ready_of
from controller.context import Context, Contribution, ControllerConfig, delivery_policy, identity
from controller.identities import CONDITION as OIDC_CONDITION
from controller.identities import oidc_identity
from controller.kafkafeatures import rendered
from controller.resolver import Resolver, Unresolvable
from controller.topicpolicy import channel_topics, name_taken
from keventing import naming
from keventing.contract import ContractEntry, DeliveryPolicy, Egress, Ingress, Reply
from keventing.kafka.client import TOPIC_MAX_MESSAGE_BYTES, TopicSpec
from keventing.resources import (
    Channel,
    Condition,
    DeliverySpec,
    Destination,
    InMemoryChannel,
    KafkaChannel,
    KReference,
    ResourceKey,
    Subscription,
)
from keventing.resources.base import ObjectMeta
from keventing.resources.messaging import (
    KAFKA_CHANNEL_API_VERSION,
    ChannelableStatus,
    ChannelStatus,
    ChannelTemplateSpec,
    InMemoryChannelSpec,
    KafkaChannelSpec,
    SubscriberStatus,
    SubscriptionStatus,
    is_set,
)

KAFKA_CHANNEL_CONDITIONS = ["TopicReady", "Addressable"]
CHANNEL_CONDITIONS = ["BackingChannelReady", "Addressable", "DeadLetterSinkResolved"]
SUBSCRIPTION_CONDITIONS = ["ReferencesResolved", "AddedToChannel", "ChannelReady"]
# With no delivery spec on a Subscription or on its channel nothing is retried, as in Knative's KafkaChannel.
NO_RETRIES = DeliveryPolicy(retry=0)


# The channels that have a topic of their own (a Channel has its backing KafkaChannel's).
TopicChannel = KafkaChannel | InMemoryChannel


def channel_path(namespace: str, name: str, kind: str = KafkaChannel.KIND) -> str:
    """Three segments, so that a channel path never collides with a Broker's ``/<namespace>/<name>``; each
    kind has its own first segment, so that a KafkaChannel and an InMemoryChannel may share a name."""
    if kind == InMemoryChannel.KIND:
        return f"/inmemorychannels/{namespace}/{name}"
    return f"/channels/{namespace}/{name}"


def channel_spec(channel: TopicChannel) -> KafkaChannelSpec:
    return channel.spec if isinstance(channel, KafkaChannel) else channel.kafka_channel_spec()


def new_channel(
    name: str, namespace: str, template: ChannelTemplateSpec, delivery: DeliverySpec | None = None
) -> TopicChannel:
    """The channel a Channel, Sequence or Parallel asks for with ``template``: of the template's kind."""
    spec = template.kafka_channel_spec()
    if delivery is not None:
        spec.delivery = delivery.model_copy(deep=True)
    metadata = ObjectMeta(name=name, namespace=namespace)
    if template.kind == InMemoryChannel.KIND:
        return InMemoryChannel(
            apiVersion=InMemoryChannel.API_VERSIONS[0],
            kind=InMemoryChannel.KIND,
            metadata=metadata,
            spec=InMemoryChannelSpec(delivery=spec.delivery),
        )
    return KafkaChannel(
        apiVersion=KAFKA_CHANNEL_API_VERSION, kind=KafkaChannel.KIND, metadata=metadata, spec=spec
    )


def channel_reference(channel: TopicChannel) -> KReference:
    return KReference(apiVersion=channel.apiVersion, kind=channel.KIND, name=channel.name)


def backing_channel(channel: Channel) -> TopicChannel:
    return new_channel(channel.name, channel.namespace, channel.template, channel.spec.delivery)


# ------------------------------------------------------------------------------------------- phases


def expand_channels(ctx: Context) -> Contribution:
    """Every Channel gets its backing channel (before the phases that reconcile KafkaChannels)."""
    out = Contribution()
    for channel in ctx.of(Channel):
        children.adopt(ctx, out, channel, [backing_channel(channel)])
    children.prune(ctx, out, [Channel.KIND])
    return out


def reconcile_kafka_channels(ctx: Context) -> Contribution:
    """KafkaChannels and InMemoryChannels: each a topic and an ingress."""
    out = Contribution()
    topic_channels: list[TopicChannel] = [*ctx.of(KafkaChannel), *ctx.of(InMemoryChannel)]
    names = channel_topics(ctx)
    for kafka_channel in topic_channels:
        name = names[kafka_channel.key]
        if name is None:  # config-kafka-features' template gives it another resource's topic
            out.addressable(kafka_channel.key, _nameless_channel(kafka_channel, ctx))
            continue
        status, topic = _reconcile_kafka_channel(kafka_channel, name, ctx.config, ctx.topic_errors)
        out.addressable(kafka_channel.key, status)
        out.topics[topic.name] = topic
        if status.ready:
            out.contract[str(kafka_channel.key)] = ContractEntry(
                ingress=Ingress(
                    **identity(kafka_channel),
                    audience=audience(kafka_channel),
                    path=channel_path(kafka_channel.namespace, kafka_channel.name, kafka_channel.KIND),
                    topic=topic.name,
                    event_types=ctx.config.event_type_auto_create,
                )
            )
    return out


def reconcile_channels(ctx: Context) -> Contribution:
    """Channels mirror their backing channel (after flows' addresses: a dead-letter sink may be one)."""
    out = Contribution()
    # A Channel's dead-letter sink may be a Channel reconciled earlier in this phase.
    resolver = Resolver(
        ChainMap(out.addresses, ctx.addresses),
        ctx.resources,
        ctx.addressables,
        ChainMap(out.statuses, ctx.desired.statuses),
        oidc=ctx.config.oidc,
    )
    for channel in ctx.of(Channel):
        out.addressable(channel.key, _reconcile_channel(channel, ctx, resolver))
    return out


def reconcile_subscriptions(ctx: Context) -> Contribution:
    out = Contribution()
    resolver = ctx.resolver
    for subscription in ctx.of(Subscription):
        status, channel, egress = _reconcile_subscription(subscription, ctx, resolver)
        out.statuses[subscription.key] = status
        if channel is not None:
            entry = _subscriber_status(subscription, status)
            for key in _listing_channels(subscription, channel):
                out.subscribers.setdefault(key, []).append(entry)
        if egress is not None:
            out.contract[str(subscription.key)] = ContractEntry(egress=egress)
    return out


# -------------------------------------------------------------------------------------- KafkaChannel


def _nameless_channel(channel: TopicChannel, ctx: Context) -> ChannelableStatus:
    template = ctx.config.kafka_features.channel_topic
    name = rendered(template, channel, naming.channel_topic(channel.namespace, channel.name, channel.KIND))
    conditions = Conditions()
    conditions.false("TopicReady", "TopicNameTaken", name_taken("topic", name))
    status = ChannelableStatus(observedGeneration=channel.metadata.generation)
    status.conditions = conditions.finish(KAFKA_CHANNEL_CONDITIONS)
    return status


def _reconcile_kafka_channel(
    channel: TopicChannel, topic_name: str, config: ControllerConfig, topic_errors: Mapping[str, str]
) -> tuple[ChannelableStatus, TopicSpec]:
    conditions = Conditions()
    status = ChannelableStatus(observedGeneration=channel.metadata.generation)
    spec = channel_spec(channel)
    topic = TopicSpec(
        topic_name,
        spec.numPartitions,
        spec.replicationFactor,
        {"max.message.bytes": TOPIC_MAX_MESSAGE_BYTES, "retention.ms": str(spec.retention_ms)},
        owner=str(channel.key),
        claim_existing=True,
    )
    if topic.name in topic_errors:
        conditions.false("TopicReady", "TopicCreationFailed", topic_errors[topic.name])
    else:
        conditions.true("TopicReady", message=f"topic {topic.name} created")
        conditions.true("Addressable")
        path = channel_path(channel.namespace, channel.name, channel.KIND)
        set_address(status, config, path, channel)
    status.conditions = conditions.finish(KAFKA_CHANNEL_CONDITIONS)
    status.annotations = {"kafka.eventing.knative.dev/topic": topic.name}
    return status, topic


# ------------------------------------------------------------------------------------------- Channel


def _reconcile_channel(channel: Channel, ctx: Context, resolver: Resolver) -> ChannelStatus:
    conditions = Conditions()
    status = ChannelStatus(observedGeneration=channel.metadata.generation)
    backing = backing_channel(channel)
    conditions.propagate(
        "BackingChannelReady",
        children.child_ready(ctx, channel, backing),
        "BackingChannelNotReady",
        f'{backing.KIND} "{backing.name}" is not ready',
    )
    if children.adopted(ctx, channel, backing) is not None:
        status.channel = channel_reference(backing)
        backing_status = ctx.desired.statuses.get(backing.key)
        if backing_status is not None and backing_status.address is not None:
            status.address = backing_status.address.model_copy()
            status.addresses = [a.model_copy() for a in backing_status.addresses or []] or None
            conditions.true("Addressable")
        else:
            conditions.unknown(
                "Addressable", "NoAddress", f'{backing.KIND} "{backing.name}" has no address yet'
            )
    dead_letter_sink = channel.spec.delivery.deadLetterSink if channel.spec.delivery else None
    if dead_letter_sink is None:
        conditions.true(
            "DeadLetterSinkResolved", "DeadLetterSinkNotConfigured", "No dead letter sink is configured."
        )
    else:
        try:
            status.deadLetterSinkUri = resolver.resolve(dead_letter_sink, channel.namespace)
            conditions.true("DeadLetterSinkResolved")
        except Unresolvable as err:
            conditions.false("DeadLetterSinkResolved", "Unable to get the dead letter sink's URI", str(err))
    status.conditions = conditions.finish(CHANNEL_CONDITIONS)
    return status


# -------------------------------------------------------------------------------------- Subscription


class _NotResolved(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _reconcile_subscription(
    subscription: Subscription, ctx: Context, resolver: Resolver
) -> tuple[SubscriptionStatus, TopicChannel | None, Egress | None]:
    """The Subscription's status, the channel whose topic it reads (None if not found) and its egress."""
    conditions = Conditions()
    status = SubscriptionStatus(observedGeneration=subscription.metadata.generation)
    physical = status.physicalSubscription
    namespace = subscription.namespace
    delivery: DeliveryPolicy | None = None
    channel: TopicChannel | None = None
    try:
        channel = _subscribed_channel(subscription, ctx)
        spec = subscription.spec
        if is_set(spec.subscriber):
            assert spec.subscriber is not None
            physical.subscriberUri = _resolve(resolver, spec.subscriber, namespace, "subscriber")
        if is_set(spec.reply):
            assert spec.reply is not None
            physical.replyUri = _resolve(resolver, spec.reply, namespace, "reply")
        try:
            delivery = delivery_policy(
                _merge_delivery(spec.delivery, channel.spec.delivery), NO_RETRIES, resolver, namespace
            )
        except Unresolvable as err:
            raise _NotResolved(
                "DeadLetterSinkResolveFailed", f"Failed to resolve spec.delivery.deadLetterSink: {err}"
            ) from None
        physical.deadLetterSinkUri = delivery.dead_letter_url
        conditions.true("ReferencesResolved")
    except _NotResolved as err:
        conditions.false("ReferencesResolved", err.reason, str(err))
    if channel is not None:
        conditions.true("AddedToChannel")
        conditions.propagate(
            "ChannelReady",
            ready_of(ctx.desired.statuses.get(channel.key))
            or Condition(type="Ready", reason="NotReconciled"),
            "ChannelNotReady",
            f'{channel.KIND} "{channel.name}" is not ready',
        )
    oidc = oidc_identity(subscription, ctx.config, conditions)
    if oidc is not None:
        status.auth = oidc.auth
    order = SUBSCRIPTION_CONDITIONS if oidc is None else [*SUBSCRIPTION_CONDITIONS, OIDC_CONDITION]
    status.conditions = conditions.finish(order)
    if not status.ready or channel is None or delivery is None:
        return status, channel, None
    ident = identity(subscription)
    channel_status = ctx.desired.statuses.get(channel.key)
    topic = (channel_status.annotations or {}).get(naming.TOPIC_ANNOTATION) if channel_status else None
    topic = topic or naming.channel_topic(channel.namespace, channel.name, channel.KIND)
    group = naming.subscription_group(channel.namespace, channel.name, ident["uid"])
    # Which group and topic serve it (kev's readiness check waits for the group's position on that topic).
    status.annotations = {naming.GROUP_ANNOTATION: group, naming.TOPIC_ANNOTATION: topic}
    subscriber = subscription.spec.subscriber
    ca_certs, audience = (
        resolver.trust(subscriber, namespace) if is_set(subscriber) and subscriber else (None, None)
    )
    egress = Egress(
        **ident,
        topics=(topic,),
        consumer_group=group,
        # Without a subscriber the egress forwards every event to the reply (no Prefer: reply).
        destination=physical.subscriberUri,
        destination_ca_certs=ca_certs,
        destination_audience=audience,
        identity=oidc.account if oidc is not None else None,
        reply=_reply(physical.replyUri, subscription, resolver),
        delivery=delivery,
        delivery_order="ordered" if subscription.delivery_order == "ordered" else "unordered",
    )
    return status, channel, egress


def _reply(url: str | None, subscription: Subscription, resolver: Resolver) -> Reply:
    if not url or subscription.spec.reply is None:
        return Reply(strategy="discard")
    ca_certs, audience = resolver.trust(subscription.spec.reply, subscription.namespace)
    return Reply(strategy="url", url=url, ca_certs=ca_certs, audience=audience)


def _subscribed_channel(subscription: Subscription, ctx: Context) -> TopicChannel:
    """The channel whose topic the Subscription reads: the one it names, or a Channel's backing one."""
    ref = subscription.spec.channel
    key = ResourceKey(ref.kind, subscription.channel_namespace, ref.name)
    described = f'{ref.kind} "{ref.name}" in namespace "{subscription.channel_namespace}"'
    if subscription.cross_namespace and not ctx.config.cross_namespace_event_links:
        raise _NotResolved(
            "CrossNamespaceEventLinksDisabled",
            f"{described} is in another namespace: enable cross-namespace-event-links in the config-features "
            f"ConfigMap of {ctx.config.system_namespace} for a Subscription to use it",
        )
    found = ctx.resources.get(key)
    if found is None:
        raise _NotResolved(
            "ChannelReferenceFailed", f"Failed to get spec.channel: {described} does not exist"
        )
    if isinstance(found, Channel):
        backing = backing_channel(found)
        adopted = children.adopted(ctx, found, backing)
        if not isinstance(adopted, KafkaChannel | InMemoryChannel):
            why = children.problem(ctx, found, backing) or "it was not created"
            raise _NotResolved(
                "ChannelReferenceFailed", f"Failed to get the backing channel of {described}: {why}"
            )
        return adopted
    assert isinstance(found, KafkaChannel | InMemoryChannel)
    return found


def _resolve(resolver: Resolver, destination: Destination, namespace: str, field: str) -> str:
    try:
        return resolver.resolve(destination, namespace)
    except Unresolvable as err:
        reason = "SubscriberResolveFailed" if field == "subscriber" else "ReplyResolveFailed"
        raise _NotResolved(reason, f"Failed to resolve spec.{field}: {err}") from None


def _merge_delivery(own: DeliverySpec | None, channel: DeliverySpec | None) -> DeliverySpec | None:
    """Field by field, the Subscription's delivery over its channel's (Knative's Kafka channel merges them)."""
    if own is None or channel is None:
        return own or channel
    merged = channel.model_dump(exclude_none=True)
    merged.update(own.model_dump(exclude_none=True))
    return DeliverySpec.model_validate(merged)


def _listing_channels(subscription: Subscription, channel: TopicChannel) -> set[ResourceKey]:
    """The channels whose ``status.subscribers`` list the Subscription: the channel it names, and the
    backing channel it reads when that is a Channel."""
    ref = subscription.spec.channel
    return {ResourceKey(ref.kind, subscription.channel_namespace, ref.name), channel.key}


def _subscriber_status(subscription: Subscription, status: SubscriptionStatus) -> SubscriberStatus:
    """How the Subscription appears in its channels' ``status.subscribers``."""
    ready = status.condition("Ready")
    return SubscriberStatus(
        uid=subscription.metadata.uid,
        observedGeneration=subscription.metadata.generation,
        ready=ready.status if ready is not None else "Unknown",
        message=ready.message if ready is not None and ready.status != "True" else None,
    )
