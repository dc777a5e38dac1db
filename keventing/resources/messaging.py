"""messaging.knative.dev resources: Channel, KafkaChannel, InMemoryChannel and Subscription.

keventing backs every channel with a Kafka topic. An InMemoryChannel applied as such is served like a
KafkaChannel (its own topic, one partition): unlike Knative's, it keeps its events across restarts, which
keventing has no reason not to do. A Channel names its implementation in ``channelTemplate``; both
KafkaChannel and InMemoryChannel templates give a backing KafkaChannel.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from keventing.durations import parse_duration
from keventing.resources.base import (
    Destination,
    KReference,
    Model,
    OpenModel,
    Resource,
    ResourceInvalid,
    Status,
)
from keventing.resources.delivery import DeliverySpec
from keventing.resources.eventing import DELIVERY_ORDER_ANNOTATION, validate_delivery_order

KAFKA_CHANNEL_API_VERSION = "messaging.knative.dev/v1beta1"
# Channel kinds a channelTemplate (or a Subscription's spec.channel) may name; all are backed by Kafka.
CHANNEL_TEMPLATE_KINDS = ("KafkaChannel", "InMemoryChannel")
# Knative's KafkaChannel defaults (7 days of retention).
DEFAULT_RETENTION_DURATION = "PT168H"


def is_set(destination: Destination | None) -> bool:
    """Knative treats an empty Destination (``{}``) like an absent one."""
    return destination is not None and (destination.ref is not None or bool(destination.uri))


class ChannelTemplateSpec(Model):
    apiVersion: str
    kind: str
    spec: dict[str, Any] | None = None

    def validate_at(self, path: str) -> None:
        if self.kind not in CHANNEL_TEMPLATE_KINDS:
            raise ResourceInvalid(
                f"{path}.kind",
                f"{self.kind!r} is not a channel keventing provides; use {' or '.join(CHANNEL_TEMPLATE_KINDS)}",
            )
        self.kafka_channel_spec(path)

    def kafka_channel_spec(self, path: str = "channelTemplate") -> KafkaChannelSpec:
        """The KafkaChannel spec this template asks for (an InMemoryChannel template keeps only its delivery)."""
        raw = dict(self.spec or {})
        if self.kind != "KafkaChannel":
            raw = {k: v for k, v in raw.items() if k == "delivery"}
        try:
            spec = KafkaChannelSpec.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            raise ResourceInvalid(
                ".".join([path, "spec", *(str(p) for p in first["loc"])]), first["msg"]
            ) from None
        spec.validate_at(f"{path}.spec")
        return spec


def default_channel_template() -> ChannelTemplateSpec:
    """What a Channel or flow without ``channelTemplate`` gets (Knative's default-ch-webhook, Kafka-flavoured)."""
    return ChannelTemplateSpec(apiVersion=KAFKA_CHANNEL_API_VERSION, kind="KafkaChannel")


class SubscriberStatus(OpenModel):
    """One Subscription as its channel sees it (Knative's ``status.subscribers``)."""

    uid: str | None = None
    observedGeneration: int | None = None
    ready: Literal["True", "False", "Unknown"] = "Unknown"
    message: str | None = None


# -------------------------------------------------------------------------------------- KafkaChannel


class KafkaChannelSpec(Model):
    numPartitions: int = 1
    replicationFactor: int = 1
    retentionDuration: str = DEFAULT_RETENTION_DURATION
    delivery: DeliverySpec | None = None

    def validate_at(self, path: str) -> None:
        if self.numPartitions <= 0:
            raise ResourceInvalid(f"{path}.numPartitions", f"must be at least 1, got {self.numPartitions}")
        if self.replicationFactor <= 0:
            raise ResourceInvalid(
                f"{path}.replicationFactor", f"must be at least 1, got {self.replicationFactor}"
            )
        try:
            parse_duration(self.retentionDuration)
        except ValueError as err:
            raise ResourceInvalid(f"{path}.retentionDuration", str(err)) from None
        if self.delivery is not None:
            self.delivery.validate_at(f"{path}.delivery")

    @property
    def retention_ms(self) -> int:
        return int(parse_duration(self.retentionDuration) * 1000)


class ChannelableStatus(Status):
    subscribers: list[SubscriberStatus] = Field(default_factory=list)
    deadLetterSinkUri: str | None = None


class InMemoryChannelSpec(Model):
    delivery: DeliverySpec | None = None
    # Knative's Subscription controller writes each Subscription here; keventing reads the Subscriptions
    # themselves, so an object exported from Knative applies unchanged and this is ignored.
    subscribers: list[dict[str, Any]] | None = None


class InMemoryChannel(Resource):
    API_VERSIONS = ("messaging.knative.dev/v1",)
    KIND = "InMemoryChannel"
    PLURAL = "inmemorychannels"
    SHORT_NAMES = ("imc",)
    ADDRESSABLE = True

    spec: InMemoryChannelSpec = Field(default_factory=InMemoryChannelSpec)
    status: ChannelableStatus = Field(default_factory=ChannelableStatus)

    def kafka_channel_spec(self) -> KafkaChannelSpec:
        """How its topic is made: a KafkaChannel's defaults (one partition, so ordered) with its delivery."""
        return KafkaChannelSpec(delivery=self.spec.delivery)

    def validate_semantics(self) -> None:
        if self.spec.delivery is not None:
            self.spec.delivery.validate_at("spec.delivery")


class KafkaChannel(Resource):
    API_VERSIONS = (KAFKA_CHANNEL_API_VERSION,)
    KIND = "KafkaChannel"
    PLURAL = "kafkachannels"
    SHORT_NAMES = ("kc",)
    ADDRESSABLE = True

    spec: KafkaChannelSpec = Field(default_factory=KafkaChannelSpec)
    status: ChannelableStatus = Field(default_factory=ChannelableStatus)

    def validate_semantics(self) -> None:
        self.spec.validate_at("spec")


# ------------------------------------------------------------------------------------------- Channel


class ChannelSpec(Model):
    channelTemplate: ChannelTemplateSpec | None = None
    delivery: DeliverySpec | None = None


class ChannelStatus(ChannelableStatus):
    # The backing channel this Channel created (Knative's status.channel).
    channel: KReference | None = None


class Channel(Resource):
    API_VERSIONS = ("messaging.knative.dev/v1",)
    KIND = "Channel"
    PLURAL = "channels"
    SHORT_NAMES = ("ch",)
    ADDRESSABLE = True

    spec: ChannelSpec = Field(default_factory=ChannelSpec)
    status: ChannelStatus = Field(default_factory=ChannelStatus)

    @property
    def template(self) -> ChannelTemplateSpec:
        return self.spec.channelTemplate or default_channel_template()

    def validate_semantics(self) -> None:
        if self.spec.channelTemplate is not None:
            self.spec.channelTemplate.validate_at("spec.channelTemplate")
        if self.spec.delivery is not None:
            self.spec.delivery.validate_at("spec.delivery")


# -------------------------------------------------------------------------------------- Subscription


class SubscriptionSpec(Model):
    channel: KReference
    subscriber: Destination | None = None
    reply: Destination | None = None
    delivery: DeliverySpec | None = None


class PhysicalSubscription(OpenModel):
    subscriberUri: str | None = None
    replyUri: str | None = None
    deadLetterSinkUri: str | None = None


class SubscriptionStatus(Status):
    physicalSubscription: PhysicalSubscription = Field(default_factory=PhysicalSubscription)

    @property
    def subscriberUri(self) -> str | None:
        """What ``kev get`` shows in the URL column."""
        return self.physicalSubscription.subscriberUri


class Subscription(Resource):
    API_VERSIONS = ("messaging.knative.dev/v1",)
    KIND = "Subscription"
    PLURAL = "subscriptions"
    SHORT_NAMES = ("sub",)

    spec: SubscriptionSpec
    status: SubscriptionStatus = Field(default_factory=SubscriptionStatus)

    @property
    def delivery_order(self) -> str:
        # KafkaChannel subscriptions are ordered by default in Knative's Kafka implementation.
        return self.metadata.annotations.get(DELIVERY_ORDER_ANNOTATION, "ordered")

    @property
    def channel_namespace(self) -> str:
        """The channel's namespace: ``spec.channel.namespace`` (another one behind config-features'
        cross-namespace-event-links), else the Subscription's own."""
        return self.spec.channel.namespace or self.namespace

    @property
    def cross_namespace(self) -> bool:
        return self.channel_namespace != self.namespace

    def validate_semantics(self) -> None:
        channel = self.spec.channel
        if not channel.name:
            raise ResourceInvalid("spec.channel.name", "the Subscription must reference a channel")
        if channel.kind not in ("Channel", *CHANNEL_TEMPLATE_KINDS):
            raise ResourceInvalid(
                "spec.channel.kind",
                f"{channel.kind!r} is not a channel; use Channel, {' or '.join(CHANNEL_TEMPLATE_KINDS)}",
            )
        if not is_set(self.spec.subscriber) and not is_set(self.spec.reply):
            raise ResourceInvalid(
                "spec", "the Subscription must reference at least one of (reply or a subscriber)"
            )
        for name in ("subscriber", "reply"):
            destination = getattr(self.spec, name)
            if is_set(destination):
                destination.validate_at(f"spec.{name}")
        if self.spec.delivery is not None:
            self.spec.delivery.validate_at("spec.delivery")
        validate_delivery_order(self.delivery_order)


KINDS: tuple[type[Resource], ...] = (Channel, KafkaChannel, InMemoryChannel, Subscription)
