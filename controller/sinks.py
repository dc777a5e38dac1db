"""KafkaSink: an ingress at ``/sinks/<namespace>/<name>`` that writes to the sink's topic in its content mode.

A KafkaSink is addressable, so this phase runs with the Brokers, before anything resolves a ref to it.
Knative's topic ownership holds, made safe: with both ``numPartitions`` and ``replicationFactor`` a missing
topic is created (and deleted with the sink); a topic that existed before is used and never deleted (the
topic ledger says which topics keventing created, see :mod:`controller.dataplane`); without them it is an
existing topic keventing neither creates nor deletes. The topic must pass :mod:`controller.topicpolicy`.
With ``spec.bootstrapServers`` (and ``spec.auth.secret.ref.name``) the topic is on that cluster
(:mod:`controller.connections`); without, on keventing's own.
"""

from __future__ import annotations

from controller.addresses import audience, set_address
from controller.conditions import Conditions
from controller.connections import ConnectionUnresolvable, kafka_sink_connection
from controller.context import Context, Contribution, ControllerConfig, identity
from controller.topicpolicy import TopicRefused, refuse_topic
from keventing.contract import ContractEntry, Ingress
from keventing.kafka.client import TOPIC_MAX_MESSAGE_BYTES, TopicSpec
from keventing.kafka.connection import KafkaConnection
from keventing.resources import KafkaSink, Status

TOPIC_OWNER_ANNOTATION = "eventing.knative.dev/topic.owner"
CONTROLLER_TOPIC_OWNER = "kafkasink-controller"
EXTERNAL_TOPIC_OWNER = "external"
CONDITIONS = ["TopicReady", "Addressable"]


def reconcile_kafka_sinks(ctx: Context) -> Contribution:
    out = Contribution()
    for sink in ctx.of(KafkaSink):
        refused = refuse_topic(ctx, sink.namespace, sink.spec.topic)
        topic, connection, unreachable = None, None, None
        try:
            connection = kafka_sink_connection(sink, ctx.resources, ctx.config.kafka_bootstrap_servers)
        except ConnectionUnresolvable as err:
            unreachable = TopicRefused(err.reason, str(err))
            if refused is None and sink.owns_topic:  # which cluster is unknown: keep the topic, touch nothing
                out.topics[sink.spec.topic] = TopicSpec(sink.spec.topic, owner=str(sink.key), create=False)
        if refused is None and unreachable is None:
            topic = kafka_sink_topic(sink, connection)
            if connection is not None:
                out.connections[str(sink.key)] = connection
                failed = ctx.connection_errors.get(str(sink.key))
                unreachable = TopicRefused("KafkaConnectionFailed", failed) if failed else None
        error = ctx.topic_errors.get(sink.spec.topic) if topic is not None else None
        created = ctx.published.topic_owners.get(sink.spec.topic) == str(sink.key)
        status = kafka_sink_status(sink, ctx.config, error, refused or unreachable, created)
        out.addressable(sink.key, status)
        if topic is not None:
            out.topics[topic.name] = topic
        if status.ready:
            out.contract[str(sink.key)] = ContractEntry(
                ingress=kafka_sink_ingress(sink, sink.owns_topic and created, connection)
            )
    return out


def kafka_sink_topic(sink: KafkaSink, connection: KafkaConnection | None = None) -> TopicSpec | None:
    """The topic keventing creates for ``sink``, or None when the topic is managed outside keventing."""
    if not sink.owns_topic:
        return None
    assert sink.spec.numPartitions is not None and sink.spec.replicationFactor is not None
    return TopicSpec(
        sink.spec.topic,
        sink.spec.numPartitions,
        sink.spec.replicationFactor,
        {"max.message.bytes": TOPIC_MAX_MESSAGE_BYTES},
        owner=str(sink.key),
        connection=connection,
    )


def kafka_sink_path(namespace: str, name: str) -> str:
    return f"/sinks/{namespace}/{name}"


def kafka_sink_status(
    sink: KafkaSink,
    config: ControllerConfig,
    topic_error: str | None,
    refused: TopicRefused | None = None,
    created: bool = True,
) -> Status:
    """``created``: keventing created the sink's topic for it (the topic ledger says so)."""
    conditions = Conditions()
    status = Status(observedGeneration=sink.metadata.generation)
    owner = CONTROLLER_TOPIC_OWNER if sink.owns_topic and created else EXTERNAL_TOPIC_OWNER
    status.annotations = {TOPIC_OWNER_ANNOTATION: owner}
    if refused is not None:
        conditions.false("TopicReady", refused.reason, refused.message)
        topic_error = refused.message
    elif topic_error is not None:
        conditions.false("TopicReady", "TopicCreationFailed", topic_error)
    elif sink.owns_topic and created:
        conditions.true("TopicReady", message=f"topic {sink.spec.topic} created")
    elif sink.owns_topic:
        conditions.true(
            "TopicReady",
            "TopicExisted",
            f"topic {sink.spec.topic} existed before the sink: keventing uses it and never deletes it",
        )
    else:
        conditions.true(
            "TopicReady",
            "TopicExternal",
            f"topic {sink.spec.topic} is managed outside keventing "
            "(set numPartitions and replicationFactor to have keventing create it)",
        )
    if topic_error is None:
        conditions.true("Addressable")
        set_address(status, config, kafka_sink_path(sink.namespace, sink.name), sink)
    status.conditions = conditions.finish(CONDITIONS)
    return status


def kafka_sink_ingress(
    sink: KafkaSink, owns_topic: bool, connection: KafkaConnection | None = None
) -> Ingress:
    return Ingress(
        **identity(sink),
        audience=audience(sink),
        path=kafka_sink_path(sink.namespace, sink.name),
        topic=sink.spec.topic,
        content_mode=sink.content_mode,
        owns_topic=owns_topic,
        connection=connection,
    )
