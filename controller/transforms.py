"""EventTransform: an address on the receiver that transforms each event synchronously (an ingress with a
``transform`` and no topic: nothing is stored, the caller gets the result or the sink's answer).

The sink, when there is one, is resolved like any Destination; a transform whose sink does not resolve is
not Ready and has no address, so nothing is sent to it.
"""

from __future__ import annotations

from controller.addresses import audience, set_address
from controller.conditions import Conditions
from controller.context import Context, Contribution, identity
from controller.resolver import Unresolvable
from keventing.contract import ContractEntry, Ingress, Transform
from keventing.resources.transforms import EventTransform, EventTransformStatus

CONDITIONS = ["SinkResolved", "Addressable"]


def event_transform_path(namespace: str, name: str) -> str:
    return f"/eventtransforms/{namespace}/{name}"


def reconcile_event_transforms(ctx: Context) -> Contribution:
    out = Contribution()
    for transform in ctx.of(EventTransform):
        spec = transform.spec
        conditions = Conditions()
        status = EventTransformStatus(observedGeneration=transform.metadata.generation)
        sink = None
        if spec.sink is None:
            conditions.true("SinkResolved", "NoSink", "no sink: the transformed event is the reply")
        else:
            try:
                sink = ctx.resolver.resolve(spec.sink, transform.namespace)
                status.sinkUri = sink
                conditions.true("SinkResolved")
            except Unresolvable as err:
                conditions.false("SinkResolved", "SinkNotFound", f"Failed to resolve spec.sink: {err}")
        if spec.sink is None or sink is not None:
            conditions.true("Addressable")
            path = event_transform_path(transform.namespace, transform.name)
            set_address(status, ctx.config, path, transform)
        status.conditions = conditions.finish(CONDITIONS)
        out.addressable(transform.key, status)
        if not status.ready or spec.jsonata is None:
            continue
        reply = spec.reply
        ca_certs, sink_audience = (
            ctx.resolver.trust(spec.sink, transform.namespace) if spec.sink else (None, None)
        )
        out.contract[str(transform.key)] = ContractEntry(
            ingress=Ingress(
                **identity(transform),
                audience=audience(transform),
                path=event_transform_path(transform.namespace, transform.name),
                topic="",
                transform=Transform(
                    expression=spec.jsonata.expression,
                    sink=sink,
                    sink_ca_certs=ca_certs,
                    sink_audience=sink_audience,
                    reply_expression=reply.jsonata.expression if reply and reply.jsonata else None,
                    reply_discard=bool(reply and reply.discard),
                ),
            )
        )
    return out
