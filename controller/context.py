"""What every reconcile phase shares: configuration, the desired state being built, resolution helpers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from controller.resolver import Resolver
from keventing.contract import ContractEntry, DeliveryPolicy
from keventing.durations import parse_duration
from keventing.kafka.client import TopicSpec
from keventing.resources import Condition, DeliverySpec, Resource, ResourceKey, Status

R = TypeVar("R", bound=Resource)


@dataclass(frozen=True)
class ControllerConfig:
    ingress_url: str = "http://localhost:8080"
    # Where the data plane reaches the receiver, when that differs from the address users see (a
    # container network, a cluster Service); destinations on the ingress are rewritten to it in the contract.
    internal_ingress_url: str | None = None
    default_partitions: int = 10
    default_replication_factor: int = 1
    # Knative's config-br-defaults: what a Broker without spec.delivery gets.
    default_delivery: DeliveryPolicy = DeliveryPolicy(
        retry=10, backoff_policy="exponential", backoff_delay=0.2
    )
    event_type_auto_create: bool = True


@dataclass
class Desired:
    topics: dict[str, TopicSpec] = field(default_factory=dict)
    contract: dict[str, ContractEntry] = field(default_factory=dict)
    statuses: dict[ResourceKey, Status] = field(default_factory=dict)
    # Resources the controller itself creates (Sequence and Parallel children), owned by their parent.
    children: dict[ResourceKey, Resource] = field(default_factory=dict)


@dataclass
class Context:
    """The input and the output of one reconcile pass, handed from phase to phase."""

    resources: dict[ResourceKey, Resource]
    config: ControllerConfig
    topic_errors: Mapping[str, str]
    desired: Desired = field(default_factory=Desired)
    # Every addressable resource → its URL (None while it is not ready); filled by the addressable phases.
    addresses: dict[ResourceKey, str | None] = field(default_factory=dict)

    def of(self, cls: type[R]) -> list[R]:
        return [r for r in self.resources.values() if isinstance(r, cls)]

    @property
    def resolver(self) -> Resolver:
        return Resolver(self.addresses, self.resources)


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
    return DeliveryPolicy(
        retry=spec.retry if spec.retry is not None else 0,
        backoff_policy=spec.backoffPolicy or default.backoff_policy,
        backoff_delay=parse_duration(spec.backoffDelay) if spec.backoffDelay else default.backoff_delay,
        timeout=parse_duration(spec.timeout) if spec.timeout else default.timeout,
        retry_after_max=parse_duration(spec.retryAfterMax) if spec.retryAfterMax else None,
        dead_letter_url=resolver.resolve(spec.deadLetterSink, namespace) if spec.deadLetterSink else None,
    )


class Conditions:
    """Collects a resource's conditions and derives Ready from them, the way Knative's ConditionSet does."""

    def __init__(self) -> None:
        self._items: dict[str, Condition] = {}

    def true(self, type_: str, reason: str | None = None, message: str | None = None) -> None:
        self._items[type_] = Condition(type=type_, status="True", reason=reason, message=message)

    def false(self, type_: str, reason: str, message: str) -> None:
        self._items[type_] = Condition(type=type_, status="False", reason=reason, message=message)

    def unknown(self, type_: str, reason: str, message: str) -> None:
        self._items[type_] = Condition(type=type_, status="Unknown", reason=reason, message=message)

    def finish(self, dependents: list[str]) -> list[Condition]:
        """Fill missing dependents as Unknown and compute Ready from the first that is not True."""
        out = []
        for type_ in dependents:
            out.append(
                self._items.get(type_) or Condition(type=type_, status="Unknown", reason="NotReconciled")
            )
        blocking = next((c for c in out if c.status != "True"), None)
        if blocking is None:
            ready = Condition(type="Ready", status="True")
        else:
            ready = Condition(
                type="Ready", status=blocking.status, reason=blocking.reason, message=blocking.message
            )
        return [ready, *out]
