"""eventing.knative.dev resources: Broker and Trigger."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pydantic import Field

from keventing import naming
from keventing.resources.base import Destination, KReference, Model, Resource, ResourceInvalid, Status
from keventing.resources.delivery import DeliverySpec

BROKER_CLASS_ANNOTATION = "eventing.knative.dev/broker.class"
# Knative's Kafka broker on a topic that exists already, which it never creates or deletes.
EXTERNAL_TOPIC_ANNOTATION = "kafka.eventing.knative.dev/external.topic"
KAFKA_BROKER_CLASS = "Kafka"
DELIVERY_ORDER_ANNOTATION = "kafka.eventing.knative.dev/delivery.order"
DELIVERY_ORDERS = ("ordered", "unordered")
# keventing's own (Knative has none): "true" stops a Trigger's delivery and takes its consumer group's members
# away, so that its committed offsets can be reset (``kev replay``); its events wait on the Broker's topic.
PAUSED_ANNOTATION = "keventing.knative.dev/paused"


def validate_delivery_order(order: str) -> None:
    """The delivery-order annotation a Trigger or a Subscription may carry."""
    if order not in DELIVERY_ORDERS:
        raise ResourceInvalid(
            f"metadata.annotations[{DELIVERY_ORDER_ANNOTATION}]",
            f"must be one of {', '.join(DELIVERY_ORDERS)}, got {order!r}",
        )


class BrokerSpec(Model):
    config: KReference | None = None
    delivery: DeliverySpec | None = None


class Broker(Resource):
    API_VERSIONS = ("eventing.knative.dev/v1",)
    KIND = "Broker"
    PLURAL = "brokers"
    ADDRESSABLE = True

    spec: BrokerSpec = Field(default_factory=BrokerSpec)

    @property
    def external_topic(self) -> str | None:
        """The existing topic the Broker uses (the external-topic annotation), or None."""
        return (self.metadata.annotations or {}).get(EXTERNAL_TOPIC_ANNOTATION)

    def validate_semantics(self) -> None:
        if self.spec.delivery is not None:
            self.spec.delivery.validate_at("spec.delivery")
        if self.external_topic is not None:
            problem = naming.topic_name_problem(self.external_topic)
            if problem is not None:
                raise ResourceInvalid(f"metadata.annotations[{EXTERNAL_TOPIC_ANNOTATION}]", problem)


class TriggerFilter(Model):
    attributes: dict[str, str] | None = None


class TriggerStatus(Status):
    subscriberUri: str | None = None
    deadLetterSinkUri: str | None = None


class TriggerSpec(Model):
    # Knative requires one of broker and brokerRef; a brokerRef may name a Broker in another namespace
    # (behind config-features' cross-namespace-event-links, checked where the Trigger is reconciled).
    broker: str = ""
    brokerRef: KReference | None = None
    filter: TriggerFilter | None = None
    filters: list[dict[str, Any]] | None = None
    subscriber: Destination
    delivery: DeliverySpec | None = None


class Trigger(Resource):
    API_VERSIONS = ("eventing.knative.dev/v1",)
    KIND = "Trigger"
    PLURAL = "triggers"

    spec: TriggerSpec
    status: TriggerStatus = Field(default_factory=TriggerStatus)

    @property
    def delivery_order(self) -> str:
        return self.metadata.annotations.get(DELIVERY_ORDER_ANNOTATION, "unordered")

    @property
    def paused(self) -> bool:
        return self.metadata.annotations.get(PAUSED_ANNOTATION, "false") == "true"

    @property
    def broker_name(self) -> str:
        ref = self.spec.brokerRef
        return ref.name if ref is not None else self.spec.broker

    @property
    def broker_namespace(self) -> str:
        """The Broker's namespace: the brokerRef's, else the Trigger's own."""
        ref = self.spec.brokerRef
        return ref.namespace if ref is not None and ref.namespace else self.namespace

    @property
    def cross_namespace(self) -> bool:
        return self.broker_namespace != self.namespace

    def validate_semantics(self) -> None:
        from keventing.filters import FilterError, validate_attributes_filter, validate_filters

        ref = self.spec.brokerRef
        if ref is None and not self.spec.broker:
            raise ResourceInvalid("spec", "expected exactly one, got neither: broker, brokerRef")
        if ref is not None:
            if self.spec.broker and self.spec.broker != ref.name:
                raise ResourceInvalid(
                    "spec",
                    f"expected exactly one, got both: broker ({self.spec.broker!r}), "
                    f"brokerRef ({ref.name!r})",
                )
            if ref.kind != "Broker":
                raise ResourceInvalid("spec.brokerRef.kind", f"must be Broker, got {ref.kind!r}")
            if ref.apiVersion is not None and ref.apiVersion.split("/")[0] != "eventing.knative.dev":
                raise ResourceInvalid(
                    "spec.brokerRef.apiVersion", f"must be eventing.knative.dev/v1, got {ref.apiVersion!r}"
                )
            if not ref.name:
                raise ResourceInvalid("spec.brokerRef.name", "must name a Broker")
        self.spec.subscriber.validate_at("spec.subscriber")
        if self.spec.delivery is not None:
            self.spec.delivery.validate_at("spec.delivery")
        validate_delivery_order(self.delivery_order)
        if self.metadata.annotations.get(PAUSED_ANNOTATION, "false") not in ("true", "false"):
            raise ResourceInvalid(f"metadata.annotations[{PAUSED_ANNOTATION}]", 'must be "true" or "false"')
        try:
            if self.spec.filter is not None:
                validate_attributes_filter(self.spec.filter.attributes)
            validate_filters(self.spec.filters)
        except FilterError as err:
            raise ResourceInvalid("", str(err)) from None


class ConfigMap(Resource):
    """A core/v1 ConfigMap, so that Knative's `kafka-broker-config` applies unchanged."""

    API_VERSIONS = ("v1",)
    KIND = "ConfigMap"
    PLURAL = "configmaps"
    SHORT_NAMES = ("cm",)

    data: dict[str, str] = Field(default_factory=dict)


class Secret(Resource):
    """A core/v1 Secret: Kafka credentials in Knative's keys, for a broker config's ``auth.secret.ref.name``,
    a KafkaSink's ``spec.auth.secret.ref`` and a KafkaSource's ``spec.net``. ``kev get`` and ``kev describe``
    show its keys, never its values (see :meth:`display_document`)."""

    API_VERSIONS = ("v1",)
    KIND = "Secret"
    PLURAL = "secrets"

    type: str | None = None
    data: dict[str, str] = Field(default_factory=dict)  # base64, as Kubernetes stores it
    stringData: dict[str, str] = Field(default_factory=dict)  # plain text, as Kubernetes accepts it

    def values(self) -> dict[str, str]:
        """Every key's value as text (``stringData`` wins over ``data``, as in Kubernetes); a key whose value
        is not base64 of UTF-8 text (a binary keystore, say) is none of Kafka's keys and is left out."""
        decoded = {}
        for key, value in self.data.items():
            try:
                decoded[key] = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                continue
        return {**decoded, **self.stringData}

    def display_document(self) -> dict[str, Any]:
        doc = super().display_document()
        sizes = {key: len(value.rstrip("=")) * 3 // 4 for key, value in self.data.items()}
        sizes.update({key: len(value.encode()) for key, value in self.stringData.items()})
        doc.pop("stringData", None)
        doc["data"] = {key: f"<redacted: {size} bytes>" for key, size in sorted(sizes.items())}
        return doc


KINDS: tuple[type[Resource], ...] = (Broker, Trigger, ConfigMap, Secret)
