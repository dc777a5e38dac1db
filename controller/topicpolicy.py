"""Which topics are whose: every Broker's topic, and whether a KafkaSink, KafkaSource or external-topic Broker
may name a topic: never a reserved one, never another tenant's.

A topic is refused when it is reserved (:mod:`keventing.topics`), when the topic ledger says keventing created
it for a resource of another namespace, when it is named like a Broker's or Channel's topic without being the
topic of a Broker or Channel of the resource's own namespace, or when it lies outside the configured user
prefixes. The refusal is a status reason and message; nothing is produced to or consumed from the topic.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.context import Context
from keventing import naming
from keventing.resources import Broker, InMemoryChannel, KafkaChannel, ResourceKey
from keventing.resources.integrations import IntegrationSink
from keventing.resources.jobsinks import JobSink
from keventing.topics import is_resource_topic

TOPIC_RESERVED = "TopicReserved"
TOPIC_NOT_ALLOWED = "TopicNotAllowed"
GROUP_NOT_ALLOWED = "ConsumerGroupNotAllowed"


@dataclass(frozen=True)
class TopicRefused:
    reason: str
    message: str


def broker_topics(ctx: Context) -> dict[ResourceKey, str]:
    """Every Broker's topic: the existing topic its external-topic annotation names, or its injective name (:mod:`keventing.naming`), or the Knative name it had before
    names were made injective, for as long as the topic ledger says keventing created that topic for this
    Broker and no other Broker's injective name is that name (an upgrade loses no topic)."""
    owners = ctx.published.topic_owners
    brokers = ctx.of(Broker)
    injective = {b.key: naming.broker_topic(b.namespace, b.name) for b in brokers}
    taken = set(injective.values())
    topics = {}
    for broker in brokers:
        if broker.external_topic is not None:
            topics[broker.key] = broker.external_topic
            continue
        legacy = naming.legacy_broker_topic(broker.namespace, broker.name)
        kept = legacy not in taken and owners.get(legacy) == str(broker.key)
        topics[broker.key] = legacy if kept else injective[broker.key]
    return topics


def namespace_topics(ctx: Context, namespace: str) -> set[str]:
    """The topics of the Brokers and channels of ``namespace``: its own, for its sinks and sources to use. An
    external-topic Broker's topic is not among them: naming a topic does not make it the namespace's."""
    external = {b.key for b in ctx.of(Broker) if b.external_topic is not None}
    topics = {
        topic
        for key, topic in broker_topics(ctx).items()
        if key.namespace == namespace and key not in external
    }
    topics.update(
        naming.integration_sink_topic(s.namespace, s.name)
        for s in ctx.of(IntegrationSink)
        if s.namespace == namespace
    )
    topics.update(
        naming.job_sink_topic(s.namespace, s.name) for s in ctx.of(JobSink) if s.namespace == namespace
    )
    for kind in (KafkaChannel, InMemoryChannel):
        topics.update(
            naming.channel_topic(c.namespace, c.name, c.KIND)
            for c in ctx.of(kind)
            if c.namespace == namespace
        )
    return topics


def refuse_topic(ctx: Context, namespace: str, topic: str) -> TopicRefused | None:
    """Why a user's resource in ``namespace`` may not use ``topic``, or None when it may."""
    policy = ctx.config.topic_policy
    reserved = policy.reserved(topic)
    if reserved is not None:
        return TopicRefused(TOPIC_RESERVED, reserved)
    owner = ctx.published.topic_owners.get(topic)
    if owner is not None and ResourceKey.parse(owner).namespace != namespace:
        # Which resource, and in which namespace, is that tenant's business: the message does not say.
        return TopicRefused(
            TOPIC_NOT_ALLOWED, f"topic {topic} was created by keventing for a resource of another namespace"
        )
    if is_resource_topic(topic) and topic not in namespace_topics(ctx, namespace):
        return TopicRefused(
            TOPIC_NOT_ALLOWED,
            f"topic {topic} is named like a Broker's or Channel's topic, and it is not the topic of a Broker "
            f"or Channel in namespace {namespace}",
        )
    outside = policy.outside_prefixes(topic, namespace)
    if outside is not None:
        return TopicRefused(TOPIC_NOT_ALLOWED, outside)
    return None


def first_refusal(ctx: Context, namespace: str, topics: list[str]) -> TopicRefused | None:
    for topic in topics:
        refused = refuse_topic(ctx, namespace, topic)
        if refused is not None:
            return refused
    return None


def refuse_group(ctx: Context, namespace: str, group: str) -> TopicRefused | None:
    """Why a KafkaSource in ``namespace`` may not join consumer group ``group``: keventing's own groups (the
    sources runners' and dispatchers' assignment groups, Triggers', another namespace's Subscriptions') are
    not for it."""
    if group.startswith(f"{ctx.config.topic_policy.instance}."):
        return TopicRefused(GROUP_NOT_ALLOWED, f"consumer group {group} is reserved to keventing")
    if group.startswith(
        (*naming.TRIGGER_GROUP_PREFIXES, naming.INTEGRATION_SINK_PREFIX, naming.JOB_SINK_PREFIX)
    ) or (group.startswith("kafka.") and not group.startswith(f"kafka.{namespace}.")):
        return TopicRefused(
            GROUP_NOT_ALLOWED, f"consumer group {group} is named like a Trigger's or Subscription's group"
        )
    return None
