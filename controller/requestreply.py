"""RequestReply: an address on the receiver that holds each request until its reply comes back through the
Broker (an ingress with ``request_reply``, producing to the Broker's topic, on the Broker's cluster).

No Triggers are made: each receiver process reads the Broker's topic itself while it holds requests and takes
the replies signed for it (receiver.requestreply). Not Ready, with no address, while the Broker is missing or
not Ready.
"""

from __future__ import annotations

from controller.addresses import audience, set_address
from controller.conditions import Conditions
from controller.context import Context, Contribution, identity
from keventing.contract import ContractEntry, Ingress, RequestReplyIngress
from keventing.resources import ResourceKey, Status
from keventing.resources.eventing import Broker
from keventing.resources.requestreply import RequestReply

CONDITIONS = ["BrokerReady", "IngressReady", "Addressable"]


def request_reply_path(namespace: str, name: str) -> str:
    return f"/requestreplies/{namespace}/{name}"


def reconcile_request_replies(ctx: Context) -> Contribution:
    out = Contribution()
    for rr in ctx.of(RequestReply):
        conditions = Conditions()
        status = Status(observedGeneration=rr.metadata.generation)
        broker_key = ResourceKey(Broker.KIND, rr.namespace, rr.spec.brokerRef.name)
        broker_status = ctx.desired.statuses.get(broker_key)
        broker_entry = ctx.desired.contract.get(str(broker_key))
        broker_ingress = broker_entry.ingress if broker_entry is not None else None
        name = rr.spec.brokerRef.name
        if not isinstance(ctx.resources.get(broker_key), Broker) or broker_status is None:
            conditions.false("BrokerReady", "BrokerDoesNotExist", f'Broker "{name}" does not exist')
        elif not broker_status.ready or broker_ingress is None:
            conditions.false("BrokerReady", "BrokerNotReady", f'Broker "{name}" is not ready')
        else:
            conditions.true("BrokerReady")
            conditions.true(
                "IngressReady",
                message="the receiver produces requests to the Broker's topic and reads replies from it",
            )
            conditions.true("Addressable")
            set_address(status, ctx.config, request_reply_path(rr.namespace, rr.name), rr)
        status.conditions = conditions.finish(CONDITIONS)
        out.addressable(rr.key, status)
        if not status.ready or broker_ingress is None:
            continue
        out.contract[str(rr.key)] = ContractEntry(
            ingress=Ingress(
                **identity(rr),
                audience=audience(rr),
                path=request_reply_path(rr.namespace, rr.name),
                topic=broker_ingress.topic,
                owns_topic=False,  # the Broker's
                connection=broker_ingress.connection,
                request_reply=RequestReplyIngress(
                    correlation_attribute=rr.spec.correlationAttribute,
                    reply_attribute=rr.spec.replyAttribute,
                    timeout=rr.timeout_seconds,
                ),
            )
        )
    return out
