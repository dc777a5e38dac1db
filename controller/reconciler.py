"""Reconciliation as a pure function: resources in → topics, contract entries, statuses and children out.

The adapters (local store, Kubernetes) feed it what they read and apply what it returns; nothing here does
I/O, so every rule is unit-tested with plain objects. Each kind has its own module of phases; the order of
``PHASES`` is the order of dependencies (addressables before what refers to them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from controller import brokers
from controller.context import Context, ControllerConfig, Desired
from keventing.resources import Resource

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
    ctx = Context({r.key: r for r in resources}, config, topic_errors or {})
    for phase in PHASES:
        phase(ctx)
    return ctx.desired
