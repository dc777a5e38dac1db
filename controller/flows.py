"""Sequence and Parallel, compiled into channels (of the flow's channelTemplate kind) and Subscriptions (as
Knative's controller does).

The data plane never hears of a flow: :func:`expand_flows` generates its channels and subscriptions, owned
by it, before any other phase runs, so they are reconciled like any others; :func:`address_flows` gives the
flow the address of its first channel; :func:`reconcile_flow_statuses` aggregates the children's statuses.
The builders are pure functions of the flow, so the expected children can be rebuilt in any phase.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

from controller import children
from controller.channels import TopicChannel, channel_reference, new_channel
from controller.conditions import Conditions
from controller.context import Context, Contribution
from keventing.resources import (
    Condition,
    DeliverySpec,
    Destination,
    KReference,
    Parallel,
    Resource,
    Sequence,
    Status,
    Subscription,
)
from keventing.resources.base import Address, ObjectMeta
from keventing.resources.flows import (
    ChannelStatusReference,
    Flow,
    ObjectReference,
    ParallelBranchStatus,
    ParallelStatus,
    SequenceStatus,
    SubscriptionStatusReference,
)
from keventing.resources.messaging import SubscriptionSpec, is_set

FLOW_CONDITIONS = ["ChannelsReady", "SubscriptionsReady", "Addressable"]


# ------------------------------------------------------------------------------------------- names


def sequence_channel_name(sequence: str, step: int) -> str:
    return f"{sequence}-kn-sequence-{step}"


def sequence_subscription_name(sequence: str, step: int) -> str:
    return f"{sequence}-kn-sequence-{step}"


def parallel_channel_name(parallel: str) -> str:
    return f"{parallel}-kn-parallel"


def parallel_branch_channel_name(parallel: str, branch: int) -> str:
    return f"{parallel}-kn-parallel-{branch}"


def parallel_filter_subscription_name(parallel: str, branch: int) -> str:
    return f"{parallel}-kn-parallel-filter-{branch}"


def parallel_subscription_name(parallel: str, branch: int) -> str:
    return f"{parallel}-kn-parallel-{branch}"


# ---------------------------------------------------------------------------------------- builders


def new_subscription(
    name: str,
    namespace: str,
    channel: KReference,
    subscriber: Destination | None,
    reply: Destination | None,
    delivery: DeliverySpec | None = None,
) -> Subscription:
    return Subscription(
        apiVersion="messaging.knative.dev/v1",
        kind="Subscription",
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=SubscriptionSpec(
            channel=channel,
            subscriber=_copy(subscriber),
            reply=_copy(reply),
            delivery=delivery.model_copy(deep=True) if delivery is not None else None,
        ),
    )


def sequence_channels(sequence: Sequence) -> list[TopicChannel]:
    return [
        new_channel(sequence_channel_name(sequence.name, i), sequence.namespace, sequence.template)
        for i in range(len(sequence.spec.steps))
    ]


def sequence_subscriptions(sequence: Sequence) -> list[Subscription]:
    """Step i reads channel i and replies to channel i+1; the last step replies to the Sequence's reply."""
    steps = sequence.spec.steps
    channels = [channel_reference(c) for c in sequence_channels(sequence)]
    subscriptions = []
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        reply = sequence.spec.reply if last else Destination(ref=channels[i + 1])
        subscriptions.append(
            new_subscription(
                sequence_subscription_name(sequence.name, i),
                sequence.namespace,
                channels[i],
                step.destination(),
                reply,
                step.delivery,
            )
        )
    return subscriptions


def parallel_channels(parallel: Parallel) -> tuple[TopicChannel, list[TopicChannel]]:
    """The ingress channel, then one channel per branch."""
    ingress = new_channel(parallel_channel_name(parallel.name), parallel.namespace, parallel.template)
    branches = [
        new_channel(parallel_branch_channel_name(parallel.name, i), parallel.namespace, parallel.template)
        for i in range(len(parallel.spec.branches))
    ]
    return ingress, branches


def parallel_subscriptions(parallel: Parallel) -> tuple[list[Subscription], list[Subscription]]:
    """Per branch: a filter subscription on the ingress channel replying to the branch channel (no filter:
    straight there), and a subscriber subscription on the branch channel replying to the branch's reply."""
    filters, subscribers = [], []
    ingress, branch_channels = parallel_channels(parallel)
    for i, branch in enumerate(parallel.spec.branches):
        branch_channel = channel_reference(branch_channels[i])
        filters.append(
            new_subscription(
                parallel_filter_subscription_name(parallel.name, i),
                parallel.namespace,
                channel_reference(ingress),
                branch.filter,
                Destination(ref=branch_channel),
            )
        )
        subscribers.append(
            new_subscription(
                parallel_subscription_name(parallel.name, i),
                parallel.namespace,
                branch_channel,
                branch.subscriber,
                branch.reply if is_set(branch.reply) else parallel.spec.reply,
                branch.delivery,
            )
        )
    return filters, subscribers


def flow_children(flow: Flow) -> list[Resource]:
    if isinstance(flow, Sequence):
        return [*sequence_channels(flow), *sequence_subscriptions(flow)]
    assert isinstance(flow, Parallel)
    ingress, branch_channels = parallel_channels(flow)
    filters, subscribers = parallel_subscriptions(flow)
    return [ingress, *branch_channels, *filters, *subscribers]


def _copy(destination: Destination | None) -> Destination | None:
    if destination is None or not is_set(destination):
        return None
    return destination.model_copy(deep=True)


# ------------------------------------------------------------------------------------------- phases


def expand_flows(ctx: Context) -> Contribution:
    """Generate every flow's channels and subscriptions; forget those of deleted or shrunk flows."""
    out = Contribution()
    for flow in ctx.of(Flow):
        children.adopt(ctx, out, flow, flow_children(flow))
    children.prune(ctx, out, [Sequence.KIND, Parallel.KIND])
    return out


def address_flows(ctx: Context) -> Contribution:
    """A flow's address is its first channel's (after KafkaChannels, before anything that may refer to it)."""
    out = Contribution()
    for flow in ctx.of(Flow):
        first = _first_channel(flow)
        owned = children.adopted(ctx, flow, first) is not None
        out.addresses[flow.key] = ctx.addresses.get(first.key) if owned else None
    return out


def reconcile_flow_statuses(ctx: Context) -> Contribution:
    out = Contribution()
    for sequence in ctx.of(Sequence):
        out.statuses[sequence.key] = _sequence_status(sequence, ctx)
    for parallel in ctx.of(Parallel):
        out.statuses[parallel.key] = _parallel_status(parallel, ctx)
    return out


def _first_channel(flow: Flow) -> TopicChannel:
    if isinstance(flow, Sequence):
        return sequence_channels(flow)[0]
    assert isinstance(flow, Parallel)
    return parallel_channels(flow)[0]


# ------------------------------------------------------------------------------------------ statuses


def _sequence_status(sequence: Sequence, ctx: Context) -> SequenceStatus:
    status = SequenceStatus(observedGeneration=sequence.metadata.generation)
    channels = sequence_channels(sequence)
    subscriptions = sequence_subscriptions(sequence)
    status.channelStatuses = [
        ChannelStatusReference(channel=_reference(c), ready=children.child_ready(ctx, sequence, c))
        for c in channels
    ]
    status.subscriptionStatuses = [
        SubscriptionStatusReference(subscription=_reference(s), ready=children.child_ready(ctx, sequence, s))
        for s in subscriptions
    ]
    _finish(
        status,
        ctx,
        sequence,
        list(zip(channels, (c.ready for c in status.channelStatuses), strict=True)),
        list(zip(subscriptions, (s.ready for s in status.subscriptionStatuses), strict=True)),
    )
    return status


def _parallel_status(parallel: Parallel, ctx: Context) -> ParallelStatus:
    status = ParallelStatus(observedGeneration=parallel.metadata.generation)
    ingress, branch_channels = parallel_channels(parallel)
    filters, subscribers = parallel_subscriptions(parallel)

    def channel_status(channel: TopicChannel) -> ChannelStatusReference:
        return ChannelStatusReference(
            channel=_reference(channel), ready=children.child_ready(ctx, parallel, channel)
        )

    def subscription_status(subscription: Subscription) -> SubscriptionStatusReference:
        return SubscriptionStatusReference(
            subscription=_reference(subscription), ready=children.child_ready(ctx, parallel, subscription)
        )

    status.ingressChannelStatus = channel_status(ingress)
    status.branchStatuses = [
        ParallelBranchStatus(
            filterSubscriptionStatus=subscription_status(filter_),
            filterChannelStatus=channel_status(channel),
            subscriberSubscriptionStatus=subscription_status(subscriber),
        )
        for filter_, channel, subscriber in zip(filters, branch_channels, subscribers, strict=True)
    ]
    channel_readiness = [(ingress, status.ingressChannelStatus.ready)]
    subscription_readiness = []
    for branch, channel, filter_, subscriber in zip(
        status.branchStatuses, branch_channels, filters, subscribers, strict=True
    ):
        channel_readiness.append((channel, branch.filterChannelStatus.ready))
        subscription_readiness.append((filter_, branch.filterSubscriptionStatus.ready))
        subscription_readiness.append((subscriber, branch.subscriberSubscriptionStatus.ready))
    _finish(status, ctx, parallel, channel_readiness, subscription_readiness)
    return status


def _finish(
    status: Status,
    ctx: Context,
    flow: Flow,
    channels: Seq[tuple[Resource, Condition]],
    subscriptions: Seq[tuple[Resource, Condition]],
) -> None:
    conditions = Conditions()
    conditions.aggregate("ChannelsReady", "ChannelsNotReady", channels)
    conditions.aggregate("SubscriptionsReady", "SubscriptionsNotReady", subscriptions)
    url = ctx.addresses.get(flow.key)
    if url:
        status.address = Address(url=url)
        conditions.true("Addressable")
    else:
        first = _first_channel(flow)
        conditions.unknown("Addressable", "NoAddress", f'{first.KIND} "{first.name}" has no address yet')
    status.conditions = conditions.finish(FLOW_CONDITIONS)


def _reference(resource: Resource) -> ObjectReference:
    return ObjectReference(
        apiVersion=resource.apiVersion, kind=resource.KIND, name=resource.name, namespace=resource.namespace
    )
