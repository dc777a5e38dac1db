"""flows.knative.dev resources: Sequence and Parallel.

Neither has a data plane of its own: the controller builds each out of KafkaChannels and Subscriptions.
"""

from __future__ import annotations

from pydantic import Field

from keventing.resources.base import (
    Condition,
    Destination,
    Model,
    OpenModel,
    Resource,
    ResourceInvalid,
    Status,
)
from keventing.resources.delivery import DeliverySpec
from keventing.resources.messaging import ChannelTemplateSpec, default_channel_template, is_set


class ObjectReference(OpenModel):
    apiVersion: str | None = None
    kind: str
    name: str
    namespace: str | None = None


class ChannelStatusReference(OpenModel):
    """One of a flow's channels and its Ready condition."""

    channel: ObjectReference
    ready: Condition


class SubscriptionStatusReference(OpenModel):
    """One of a flow's subscriptions and its Ready condition."""

    subscription: ObjectReference
    ready: Condition


class Flow(Resource):
    """What Sequence and Parallel share: addressable, and built from channels of ``channelTemplate``."""

    API_VERSIONS = ("flows.knative.dev/v1",)
    ADDRESSABLE = True

    @property
    def template(self) -> ChannelTemplateSpec:
        return self.spec.channelTemplate or default_channel_template()


def _validate_common(template: ChannelTemplateSpec | None, reply: Destination | None) -> None:
    if template is not None:
        template.validate_at("spec.channelTemplate")
    if is_set(reply):
        assert reply is not None
        reply.validate_at("spec.reply")


# ------------------------------------------------------------------------------------------ Sequence


class SequenceStep(Destination):
    """A step is a Destination plus the delivery spec for events sent to it."""

    delivery: DeliverySpec | None = None

    def destination(self) -> Destination:
        return Destination(ref=self.ref, uri=self.uri, CACerts=self.CACerts, audience=self.audience)


class SequenceSpec(Model):
    steps: list[SequenceStep]
    channelTemplate: ChannelTemplateSpec | None = None
    reply: Destination | None = None


class SequenceStatus(Status):
    channelStatuses: list[ChannelStatusReference] = Field(default_factory=list)
    subscriptionStatuses: list[SubscriptionStatusReference] = Field(default_factory=list)


class Sequence(Flow):
    KIND = "Sequence"
    PLURAL = "sequences"

    spec: SequenceSpec
    status: SequenceStatus = Field(default_factory=SequenceStatus)

    def validate_semantics(self) -> None:
        if not self.spec.steps:
            raise ResourceInvalid("spec.steps", "a Sequence needs at least one step")
        for i, step in enumerate(self.spec.steps):
            step.validate_at(f"spec.steps[{i}]")
            if step.delivery is not None:
                step.delivery.validate_at(f"spec.steps[{i}].delivery")
        _validate_common(self.spec.channelTemplate, self.spec.reply)


# ------------------------------------------------------------------------------------------ Parallel


class ParallelBranch(Model):
    filter: Destination | None = None
    subscriber: Destination
    reply: Destination | None = None
    delivery: DeliverySpec | None = None


class ParallelSpec(Model):
    branches: list[ParallelBranch]
    channelTemplate: ChannelTemplateSpec | None = None
    reply: Destination | None = None


class ParallelBranchStatus(OpenModel):
    filterSubscriptionStatus: SubscriptionStatusReference
    filterChannelStatus: ChannelStatusReference
    subscriberSubscriptionStatus: SubscriptionStatusReference


class ParallelStatus(Status):
    ingressChannelStatus: ChannelStatusReference | None = None
    branchStatuses: list[ParallelBranchStatus] = Field(default_factory=list)


class Parallel(Flow):
    KIND = "Parallel"
    PLURAL = "parallels"

    spec: ParallelSpec
    status: ParallelStatus = Field(default_factory=ParallelStatus)

    def validate_semantics(self) -> None:
        if not self.spec.branches:
            raise ResourceInvalid("spec.branches", "a Parallel needs at least one branch")
        for i, branch in enumerate(self.spec.branches):
            path = f"spec.branches[{i}]"
            branch.subscriber.validate_at(f"{path}.subscriber")
            for name in ("filter", "reply"):
                destination = getattr(branch, name)
                if is_set(destination):
                    destination.validate_at(f"{path}.{name}")
            if branch.delivery is not None:
                branch.delivery.validate_at(f"{path}.delivery")
        _validate_common(self.spec.channelTemplate, self.spec.reply)


KINDS: tuple[type[Resource], ...] = (Sequence, Parallel)
