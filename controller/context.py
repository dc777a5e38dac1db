"""What every reconcile phase shares: configuration, the state merged so far, what a phase contributes.

A phase reads a :class:`Context` and returns a :class:`Contribution`; only the reconciler merges contributions
into the context (see :func:`controller.reconciler.merge`), so no phase edits another's output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from controller.kafkafeatures import KafkaFeatures
from controller.resolver import ObjectRef, Resolver
from keventing.contract import ContractEntry, DeliveryPolicy
from keventing.durations import parse_duration
from keventing.kafka.client import TopicSpec
from keventing.kafka.connection import KafkaConnection
from keventing.resources import DeliverySpec, Resource, ResourceKey, Status
from keventing.resources.messaging import SubscriberStatus
from keventing.sourcereports import SourceReport
from keventing.topics import TopicPolicy

R = TypeVar("R", bound=Resource)


@dataclass(frozen=True)
class ControllerConfig:
    ingress_url: str = "http://localhost:8080"
    # Where the data plane reaches the receiver, when that differs from the address users see (a
    # container network, a cluster Service); destinations on the ingress are rewritten to it in the contract.
    internal_ingress_url: str | None = None
    default_partitions: int = 10
    default_replication_factor: int = 1
    # What a Broker without spec.delivery gets when config-br-defaults names no delivery.
    default_delivery: DeliveryPolicy = DeliveryPolicy(
        retry=10, backoff_policy="exponential", backoff_delay=0.2
    )
    event_type_auto_create: bool = True
    # Which topics a KafkaSink or KafkaSource may name (keventing.topics; KEVENTING_USER_TOPIC_PREFIXES).
    topic_policy: TopicPolicy = TopicPolicy()
    # Where Knative's ConfigMaps (config-br-defaults, the default kafka-broker-config) live.
    system_namespace: str = "knative-eventing"
    # Kubernetes mode: a ContainerSource is a Deployment bound by a generated SinkBinding, not a local process.
    kubernetes: bool = False
    # The eventing.knative.dev/broker.class values keventing claims (KEVENTING_BROKER_CLASSES). In Kubernetes
    # mode the operator never observes other Brokers; locally they are in the store and say they are not served.
    broker_classes: frozenset[str] = frozenset({"Kafka"})
    # The services' own cluster: a resource naming it without credentials of its own uses the services'.
    kafka_bootstrap_servers: str = ""
    # Knative's transport-encryption (disabled, permissive, strict): which addresses are published
    # (controller.addresses); the https ones are on ingress_https_url, signed by ingress_ca_certs (PEM).
    transport_encryption: str = "disabled"
    ingress_https_url: str = "https://localhost:8443"
    # Where the data plane reaches the receiver's HTTPS (as internal_ingress_url for HTTP).
    internal_ingress_https_url: str | None = None
    ingress_ca_certs: str | None = None
    # Knative's authentication-oidc: addresses publish their audience, EventPolicies apply.
    oidc: bool = False
    default_authorization_mode: str = "allow-same-namespace"
    # Knative's cross-namespace-event-links (config-features, controller.features): Triggers may read a
    # Broker of another namespace.
    cross_namespace_event_links: bool = False
    # Knative's config-kafka-features name templates (controller.kafkafeatures), read once per pass.
    kafka_features: KafkaFeatures = KafkaFeatures()


@dataclass(frozen=True)
class Published:
    """What earlier passes left on Kafka that names must stay true to (see :mod:`controller.dataplane`)."""

    # Topic keventing created (the topic ledger) → the id of the resource it was created for.
    topic_owners: Mapping[str, str] = field(default_factory=dict)
    # Contract entry id → the consumer group its egress was published with.
    consumer_groups: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Desired:
    """What reconciliation wants to exist; the adapter makes it so (see :mod:`controller.adapter`)."""

    topics: dict[str, TopicSpec] = field(default_factory=dict)
    contract: dict[str, ContractEntry] = field(default_factory=dict)
    statuses: dict[ResourceKey, Status] = field(default_factory=dict)
    # Resources the controller itself creates (Sequence and Parallel children), owned by their parent.
    children: dict[ResourceKey, Resource] = field(default_factory=dict)
    # Resource id → the Kafka connection of its own it uses (not the services'), to check it can connect.
    connections: dict[str, KafkaConnection] = field(default_factory=dict)


@dataclass
class Contribution(Desired):
    """What one phase adds to the desired state, and what it tells the phases after it; the reconciler
    merges it before the next phase runs."""

    # Stored children their parent no longer wants: later phases must not reconcile them.
    forgotten: set[ResourceKey] = field(default_factory=set)
    # Addressable resources → their URL (None while not ready), for the phases that resolve destinations.
    addresses: dict[ResourceKey, str | None] = field(default_factory=dict)
    # Channel → the Subscriptions it lists in status.subscribers (a Subscription's phase reports them).
    subscribers: dict[ResourceKey, list[SubscriberStatus]] = field(default_factory=dict)

    def addressable(self, key: ResourceKey, status: Status) -> None:
        """Record the status of an addressable resource and its address (only a Ready one has one)."""
        self.statuses[key] = status
        self.addresses[key] = status.address.url if status.address and status.ready else None


@dataclass
class Context:
    """The input of one reconcile pass and everything the phases before this one contributed."""

    resources: dict[ResourceKey, Resource]
    config: ControllerConfig
    topic_errors: Mapping[str, str]
    # The foreign objects the resources refer to that exist → their URL (see controller.resolver).
    addressables: Mapping[ObjectRef, str | None] | None = None
    desired: Desired = field(default_factory=Desired)
    # Every addressable resource → its URL (None while it is not ready); merged from the addressable phases.
    addresses: dict[ResourceKey, str | None] = field(default_factory=dict)
    # Contract entry id → what the sources runner reports about the source (keventing.sourcereports).
    source_reports: Mapping[str, SourceReport] = field(default_factory=dict)
    published: Published = field(default_factory=Published)
    # Resource id → why its own Kafka connection failed (see Desired.connections); never a credential.
    connection_errors: Mapping[str, str] = field(default_factory=dict)

    def of(self, cls: type[R]) -> list[R]:
        return [r for r in self.resources.values() if isinstance(r, cls)]

    @property
    def resolver(self) -> Resolver:
        return Resolver(
            self.addresses, self.resources, self.addressables, self.desired.statuses, oidc=self.config.oidc
        )


def identity(resource: Resource) -> dict[str, Any]:
    """The fields every contract entry takes from the resource it serves (uid only where the model has one)."""
    return {
        "id": str(resource.key),
        "kind": resource.KIND,
        "namespace": resource.namespace,
        "name": resource.name,
        "uid": resource.metadata.uid or str(resource.key),
    }


def delivery_policy(
    spec: DeliverySpec | None, default: DeliveryPolicy, resolver: Resolver, namespace: str
) -> DeliveryPolicy:
    """Resolve a DeliverySpec; fields it leaves out keep their default."""
    if spec is None:
        return default
    dead_letter_ca_certs, dead_letter_audience = (
        resolver.trust(spec.deadLetterSink, namespace) if spec.deadLetterSink else (None, None)
    )
    return DeliveryPolicy(
        retry=spec.retry if spec.retry is not None else 0,
        backoff_policy=spec.backoffPolicy or default.backoff_policy,
        backoff_delay=parse_duration(spec.backoffDelay) if spec.backoffDelay else default.backoff_delay,
        timeout=parse_duration(spec.timeout) if spec.timeout else default.timeout,
        retry_after_max=parse_duration(spec.retryAfterMax) if spec.retryAfterMax else None,
        backoff_max=parse_duration(spec.backoffMax) if spec.backoffMax else None,
        format=spec.format,
        dead_letter_url=resolver.resolve(spec.deadLetterSink, namespace) if spec.deadLetterSink else None,
        dead_letter_ca_certs=dead_letter_ca_certs,
        dead_letter_audience=dead_letter_audience,
    )
