"""Reconciliation as a pure function: resources in → topics, contract entries, statuses and children out.

The adapters (local store, Kubernetes) feed it what they read and apply what it returns; nothing here does
I/O, so every rule is unit-tested with plain objects. Each kind has its own module of phases; the order of
``PHASES`` is the order of dependencies (addressables before what refers to them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from controller import brokers, channels, eventtypes, flows, sinks, sources
from controller.context import Context, ControllerConfig, Desired
from keventing.resources import Condition, Resource, ResourceInvalid, ResourceKey, Status

__all__ = ["PHASES", "ControllerConfig", "Desired", "reconcile"]

Phase = Callable[[Context], None]

PHASES: list[Phase] = [
    # Sequence and Parallel children, then Channels' backing KafkaChannels, before every other phase.
    flows.expand_flows,
    channels.expand_channels,
    brokers.reconcile_brokers,
    sinks.reconcile_kafka_sinks,
    channels.reconcile_kafka_channels,
    flows.address_flows,
    channels.reconcile_channels,
    brokers.reconcile_triggers,
    channels.reconcile_subscriptions,
    # Flows aggregate the statuses of their channels and subscriptions, so they come after both.
    flows.reconcile_flow_statuses,
    # Sources resolve sinks of any addressable kind, so they come after every addressable.
    sources.reconcile_sources,
    eventtypes.reconcile_event_types,
]


def reconcile(
    resources: Iterable[Resource],
    config: ControllerConfig,
    topic_errors: Mapping[str, str] | None = None,
) -> Desired:
    """Compute everything the data plane needs from the resources; ``topic_errors`` are failed creations."""
    valid: dict[ResourceKey, Resource] = {}
    invalid: dict[ResourceKey, Status] = {}
    for resource in resources:
        try:
            resource.validate_semantics()
        except ResourceInvalid as err:
            invalid[resource.key] = _invalid_status(resource, str(err))
            continue
        valid[resource.key] = resource
    ctx = Context(valid, config, topic_errors or {})
    for phase in PHASES:
        phase(ctx)
    ctx.desired.statuses.update(invalid)
    return ctx.desired


def _invalid_status(resource: Resource, message: str) -> Status:
    """An invalid resource takes no part in reconciliation; its status says what is wrong with it."""
    status = type(resource.status)(observedGeneration=resource.metadata.generation)
    status.conditions = [Condition(type="Ready", status="False", reason="InvalidSpec", message=message)]
    return status
