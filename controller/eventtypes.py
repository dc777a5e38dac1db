"""EventType: the registry entry is only data; its status says whether what it refers to exists."""

from __future__ import annotations

from collections.abc import Collection

from controller.conditions import Conditions
from controller.context import Context, Contribution
from keventing.resources import EventType, ResourceKey, Status


def reconcile_event_types(ctx: Context) -> Contribution:
    out = Contribution()
    for event_type in ctx.of(EventType):
        out.statuses[event_type.key] = event_type_status(event_type, ctx.resources.keys())
    return out


def event_type_status(event_type: EventType, existing: Collection[ResourceKey]) -> Status:
    conditions = Conditions()
    reference = event_type.reference
    if reference is None:
        conditions.true("ReferenceExists", "ReferenceNotSet", "Reference not set")
    else:
        key = ResourceKey(reference.kind, reference.namespace or event_type.namespace, reference.name)
        if key in existing:
            conditions.true("ReferenceExists")
        else:
            conditions.false(
                "ReferenceExists",
                "ResourceDoesNotExist",
                f'{reference.kind} "{reference.name}" in namespace "{key.namespace}" does not exist',
            )
    status = Status(observedGeneration=event_type.metadata.generation)
    status.conditions = conditions.finish(["ReferenceExists"])
    return status
