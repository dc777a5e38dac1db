"""IntegrationSink (``spec.log``): a topic and an ingress, and an egress that writes each event to the
dispatcher's log (the ``log:`` destination, :mod:`dispatcher.logsink`).

The sink's address takes events like any addressable: a 202 means the event is on its topic. The dispatcher
then logs it, as Knative's log-sink Kamelet would print it, at the level the sink names.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from controller.addresses import audience, set_address
from controller.conditions import Conditions
from controller.context import Context, Contribution, identity
from keventing import naming
from keventing.contract import ContractEntry, DeliveryPolicy, Egress, Ingress, Reply
from keventing.kafka.client import TOPIC_MAX_MESSAGE_BYTES, TopicSpec
from keventing.resources import Status
from keventing.resources.integrations import IntegrationSink

CONDITIONS = ["TopicReady", "Addressable"]


def integration_sink_path(namespace: str, name: str) -> str:
    return f"/integrationsinks/{namespace}/{name}"


def log_destination(sink: IntegrationSink) -> str:
    """The ``log:`` URL the dispatcher writes the sink's events to, with the options it honours."""
    log = sink.spec.log
    assert log is not None
    options = {
        "level": (log.level or "INFO").upper(),
        "headers": "true" if log.showHeaders else "false",
        # The log-sink Kamelet shows the body unless told not to.
        "body": "false" if log.showBody is False else "true",
        "multiline": "true" if log.multiline else "false",
    }
    if log.loggerName:
        options["logger"] = log.loggerName
    if log.marker:
        options["marker"] = log.marker
    return f"log:{quote(sink.namespace)}/{quote(sink.name)}?{urlencode(options)}"


def reconcile_integration_sinks(ctx: Context) -> Contribution:
    out = Contribution()
    for sink in ctx.of(IntegrationSink):
        topic = TopicSpec(
            naming.integration_sink_topic(sink.namespace, sink.name),
            1,
            ctx.config.default_replication_factor,
            {"max.message.bytes": TOPIC_MAX_MESSAGE_BYTES},
            owner=str(sink.key),
            claim_existing=True,
        )
        out.topics[topic.name] = topic
        conditions = Conditions()
        status = Status(observedGeneration=sink.metadata.generation)
        error = ctx.topic_errors.get(topic.name)
        if error is not None:
            conditions.false("TopicReady", "TopicCreationFailed", error)
        else:
            conditions.true("TopicReady", message=f"topic {topic.name} created; its events are logged")
            conditions.true("Addressable")
            set_address(status, ctx.config, integration_sink_path(sink.namespace, sink.name), sink)
        status.conditions = conditions.finish(CONDITIONS)
        out.addressable(sink.key, status)
        if not status.ready:
            continue
        ident = identity(sink)
        out.contract[str(sink.key)] = ContractEntry(
            ingress=Ingress(
                **ident,
                audience=audience(sink),
                path=integration_sink_path(sink.namespace, sink.name),
                topic=topic.name,
            )
        )
        out.contract[f"{sink.key}/log"] = ContractEntry(
            egress=Egress(
                **{**ident, "id": f"{ident['id']}/log"},
                topics=(topic.name,),
                consumer_group=topic.name,
                destination=log_destination(sink),
                prefer_reply=False,
                reply=Reply(strategy="discard"),
                delivery=DeliveryPolicy(retry=0),
                delivery_order="ordered",
            )
        )
    return out
