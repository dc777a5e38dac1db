"""Which topics are whose: every Broker's topic, and whether a KafkaSink, KafkaSource or external-topic Broker
may name a topic: never a reserved one, never another tenant's.

A topic is refused when it is reserved (:mod:`keventing.topics`), when the topic ledger says keventing created
it for a resource of another namespace, when it is named like a Broker's or Channel's topic without being the
topic of a Broker or Channel of the resource's own namespace, or when it lies outside the configured user
prefixes. The refusal is a status reason and message; nothing is produced to or consumed from the topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.context import Context
from controller.kafkafeatures import assign_names
from keventing import naming
from keventing.resources import Broker, InMemoryChannel, KafkaChannel, ResourceKey, Trigger
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


def _owned_topics(ctx: Context) -> dict[ResourceKey, set[str]]:
    owned: dict[ResourceKey, set[str]] = {}
    for topic, owner in ctx.published.topic_owners.items():
        owned.setdefault(ResourceKey.parse(owner), set()).add(topic)
    return owned


def _named(
    resources: list[tuple[ResourceKey, str, str | None, set[str]]], owned: Mapping[ResourceKey, set[str]]
) -> dict[ResourceKey, str | None]:
    """(key, default, rendered, its standard names) → each topic: the default while the resource owns it (it
    was made so), else a topic other than its standard names that the ledger says keventing made for it (a
    template's, earlier), else the rendered or default one; None when that is another's
    (:func:`controller.kafkafeatures.assign_names`)."""
    kept = {}
    for key, default, _, standard in resources:
        mine = owned.get(key, set())
        templated = mine - standard
        if default in mine:
            kept[key] = default
        elif templated:
            kept[key] = min(templated)
    return assign_names(((key, rendered, default) for key, default, rendered, _ in resources), kept)


def broker_topics(ctx: Context) -> dict[ResourceKey, str | None]:
    """Every Broker's topic: the existing topic its external-topic annotation names, or its injective name
    (:mod:`keventing.naming`), or the Knative name it had before names were made injective, for as long as the
    topic ledger says keventing created that topic for this Broker and no other Broker's injective name is that
    name (an upgrade loses no topic); with config-kafka-features' ``brokers.topic.template``, a new Broker's
    topic is the template's, and every Broker keeps the topic it was created with. None: the name is another's."""
    owners = ctx.published.topic_owners
    brokers = [b for b in ctx.of(Broker) if b.external_topic is None]
    injective = {b.key: naming.broker_topic(b.namespace, b.name) for b in brokers}
    taken = set(injective.values())
    template = ctx.config.kafka_features.broker_topic
    wanted = []
    for broker in brokers:
        legacy = naming.legacy_broker_topic(broker.namespace, broker.name)
        kept = legacy not in taken and owners.get(legacy) == str(broker.key)
        default = legacy if kept else injective[broker.key]
        rendered = template.render(broker) if template is not None else None
        wanted.append((broker.key, default, rendered, {legacy, injective[broker.key]}))
    topics: dict[ResourceKey, str | None] = dict(_named(wanted, _owned_topics(ctx)))
    for broker in ctx.of(Broker):
        if broker.external_topic is not None:
            topics[broker.key] = broker.external_topic
    return topics


def channel_topics(ctx: Context) -> dict[ResourceKey, str | None]:
    """Every KafkaChannel's and InMemoryChannel's topic, named as :func:`broker_topics` names Brokers' (with
    ``channels.topic.template``)."""
    template = ctx.config.kafka_features.channel_topic
    wanted = []
    for kind in (KafkaChannel, InMemoryChannel):
        for c in ctx.of(kind):
            default = naming.channel_topic(c.namespace, c.name, c.KIND)
            wanted.append((c.key, default, template.render(c) if template is not None else None, {default}))
    return _named(wanted, _owned_topics(ctx))


def trigger_groups(ctx: Context) -> dict[ResourceKey, str | None]:
    """Every Trigger's consumer group, as :func:`broker_topics` names topics: the injective name, or the
    Knative name the Trigger was published with before, unless another Trigger's injective name is that; with
    config-kafka-features' ``triggers.consumergroup.template``, a new Trigger's group is the template's and every
    Trigger keeps the group it was published with (as Knative keeps it in the Trigger's status). None: the
    template's name is another Trigger's group."""
    published = ctx.published.consumer_groups
    triggers = ctx.of(Trigger)
    injective = {t.key: naming.trigger_group(t.namespace, t.name) for t in triggers}
    taken = set(injective.values())
    template = ctx.config.kafka_features.trigger_group
    wanted, kept = [], {}
    for trigger in triggers:
        legacy = naming.legacy_trigger_group(trigger.namespace, trigger.name)
        was = published.get(str(trigger.key))
        if was == legacy:
            default = legacy if legacy not in taken else injective[trigger.key]
        else:
            default = injective[trigger.key]
            if was is not None and was != default:
                kept[trigger.key] = was  # a template's, when it was published
        if was == default:
            kept[trigger.key] = default
        wanted.append((trigger.key, template.render(trigger) if template is not None else None, default))
    return assign_names(wanted, kept)


def _resource_topics(ctx: Context) -> set[str]:
    """Every Broker's (not an external topic) and Channel's topic, however a template names them."""
    external = {b.key for b in ctx.of(Broker) if b.external_topic is not None}
    topics = {t for key, t in broker_topics(ctx).items() if t is not None and key not in external}
    return topics | {t for t in channel_topics(ctx).values() if t is not None}


def name_taken(what: str, name: str) -> str:
    """The message of a resource whose name (a template's) is another resource's (which is not said: that may be
    another tenant's)."""
    return (
        f"{what} {name} is another resource's: a config-kafka-features template gives two resources one name "
        "(name the namespace and the name in it)"
    )


def namespace_topics(ctx: Context, namespace: str) -> set[str]:
    """The topics of the Brokers and channels of ``namespace``: its own, for its sinks and sources to use. An
    external-topic Broker's topic is not among them: naming a topic does not make it the namespace's."""
    external = {b.key for b in ctx.of(Broker) if b.external_topic is not None}
    topics = {
        topic
        for key, topic in broker_topics(ctx).items()
        if key.namespace == namespace and key not in external and topic is not None
    }
    topics.update(
        naming.integration_sink_topic(s.namespace, s.name)
        for s in ctx.of(IntegrationSink)
        if s.namespace == namespace
    )
    topics.update(
        naming.job_sink_topic(s.namespace, s.name) for s in ctx.of(JobSink) if s.namespace == namespace
    )
    topics.update(
        topic
        for key, topic in channel_topics(ctx).items()
        if key.namespace == namespace and topic is not None
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
    own = namespace_topics(ctx, namespace)
    if (is_resource_topic(topic) or topic in _resource_topics(ctx)) and topic not in own:
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
    if (
        group.startswith(
            (*naming.TRIGGER_GROUP_PREFIXES, naming.INTEGRATION_SINK_PREFIX, naming.JOB_SINK_PREFIX)
        )
        or (group.startswith("kafka.") and not group.startswith(f"kafka.{namespace}."))
        or group in trigger_groups(ctx).values()  # a template's names need not look like Knative's
    ):
        return TopicRefused(
            GROUP_NOT_ALLOWED, f"consumer group {group} is named like a Trigger's or Subscription's group"
        )
    return None
