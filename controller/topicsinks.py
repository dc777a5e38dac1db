"""A sink served from a topic of its own (IntegrationSink, JobSink): the topic, the sink's address and Ready
status, its ingress, and the one egress that hands each event to a pseudo-destination the dispatcher serves
itself (``log:``, ``job:``), in order, replies discarded."""

from __future__ import annotations

from dataclasses import dataclass

from controller.addresses import audience, set_address
from controller.conditions import Conditions
from controller.context import Context, Contribution, identity
from keventing.contract import ContractEntry, DeliveryPolicy, Egress, Ingress, JobRun, Reply
from keventing.kafka.client import TOPIC_MAX_MESSAGE_BYTES, TopicSpec
from keventing.resources import Resource, Status

CONDITIONS = ["TopicReady", "Addressable"]


@dataclass(frozen=True)
class TopicSink:
    """What differs between such sinks: names, where the events go, how a failed hand-over is retried."""

    topic: str
    path: str
    egress: str  # the egress's id after the sink's own: ``<kind>/<ns>/<name>/<egress>``
    destination: str
    delivery: DeliveryPolicy
    topic_message: str  # TopicReady's message: what becomes of the events
    addressable_message: str | None = None
    job: JobRun | None = None


def reconcile_topic_sink(
    ctx: Context, out: Contribution, sink: Resource, plan: TopicSink, status: Status
) -> None:
    # One partition: the sink's events are handed over in the order they came.
    topic = TopicSpec(
        plan.topic,
        1,
        ctx.config.default_replication_factor,
        {"max.message.bytes": TOPIC_MAX_MESSAGE_BYTES},
        owner=str(sink.key),
        claim_existing=True,
    )
    out.topics[topic.name] = topic
    conditions = Conditions()
    error = ctx.topic_errors.get(topic.name)
    if error is not None:
        conditions.false("TopicReady", "TopicCreationFailed", error)
    else:
        conditions.true("TopicReady", message=f"topic {topic.name} created; {plan.topic_message}")
        conditions.true("Addressable", message=plan.addressable_message)
        set_address(status, ctx.config, plan.path, sink)
    status.conditions = conditions.finish(CONDITIONS)
    out.addressable(sink.key, status)
    if not status.ready:
        return
    ident = identity(sink)
    out.contract[str(sink.key)] = ContractEntry(
        ingress=Ingress(**ident, audience=audience(sink), path=plan.path, topic=topic.name)
    )
    out.contract[f"{sink.key}/{plan.egress}"] = ContractEntry(
        egress=Egress(
            **{**ident, "id": f"{ident['id']}/{plan.egress}"},
            topics=(topic.name,),
            consumer_group=topic.name,
            destination=plan.destination,
            prefer_reply=False,
            reply=Reply(strategy="discard"),
            delivery=plan.delivery,
            delivery_order="ordered",
            job=plan.job,
        )
    )
