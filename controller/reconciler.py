"""Reconciliation as a pure function: resources in → topics, contract entries, statuses and children out.

The adapters (local store, Kubernetes) feed it what they read and apply what it returns; nothing here does
I/O, so every rule is unit-tested with plain objects. Each kind has its own module of phases; the order of
``PHASES`` is the order of dependencies (addressables before what refers to them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from controller import brokers
from controller.context import Context, ControllerConfig, Desired
from keventing.resources import Condition, Resource, ResourceInvalid, ResourceKey, Status

__all__ = ["PHASES", "ControllerConfig", "Desired", "reconcile"]

Phase = Callable[[Context], None]

PHASES: list[Phase] = [
    brokers.reconcile_brokers,
    brokers.reconcile_triggers,
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
