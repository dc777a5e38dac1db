"""Resources the controller generates for a parent (Kubernetes' controller ownerReferences, done purely).

A generating phase builds the children it wants and hands them to :func:`adopt`, which adds them to the
phase's contribution; merged, they go into ``desired.children`` (the adapter stores them) and into
``ctx.resources`` (so the later phases reconcile the children of this pass, not stale stored copies).
:func:`prune` then names the stored children their parent no longer wants; the adapter deletes those from the
store, and with them their topics and contract entries.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from controller.conditions import ready_of
from controller.context import Context, Contribution
from keventing.resources import Condition, Resource, ResourceInvalid
from keventing.resources.base import OwnerReference


def owner_reference(parent: Resource) -> OwnerReference:
    return OwnerReference(
        apiVersion=parent.apiVersion,
        kind=parent.KIND,
        name=parent.name,
        uid=parent.metadata.uid,
        controller=True,
    )


def controller_of(resource: Resource) -> OwnerReference | None:
    return next((ref for ref in resource.metadata.ownerReferences if ref.controller), None)


def is_controlled_by(resource: Resource, parent: Resource) -> bool:
    ref = controller_of(resource)
    return ref is not None and ref.kind == parent.KIND and ref.name == parent.name


def adopt(ctx: Context, into: Contribution, parent: Resource, children: Iterable[Resource]) -> None:
    """Add the ``children`` of ``parent`` to ``into`` (those that :func:`problem` has nothing against)."""
    for child in children:
        child.metadata.namespace = parent.namespace
        child.metadata.ownerReferences = [owner_reference(parent)]
        if problem(ctx, parent, child, into) is not None:
            continue
        _keep_identity(child, ctx.resources.get(child.key), parent)
        into.children[child.key] = child


def problem(
    ctx: Context, parent: Resource, child: Resource, pending: Contribution | None = None
) -> str | None:
    """Why ``parent`` cannot have ``child`` (a name taken by a resource it does not own, an invalid spec);
    ``pending`` holds the children the current phase has adopted so far."""
    stored = pending.children.get(child.key) if pending is not None else None
    stored = stored if stored is not None else ctx.resources.get(child.key)
    if stored is not None and not is_controlled_by(stored, parent):
        return f'{child.KIND} "{child.name}" already exists and is not owned by {parent.KIND} "{parent.name}"'
    try:
        # An invalid child would be refused by the store and written again on every pass.
        child.validate_semantics()
    except ResourceInvalid as err:
        return f'{parent.KIND} "{parent.name}" would create an invalid {child.KIND} "{child.name}": {err}'
    return None


def adopted(ctx: Context, parent: Resource, child: Resource) -> Resource | None:
    """The child of this pass with ``child``'s key, if ``parent`` got to own it."""
    found = ctx.desired.children.get(child.key)
    return found if found is not None and is_controlled_by(found, parent) else None


def child_ready(ctx: Context, parent: Resource, child: Resource) -> Condition:
    """The Ready condition of one of ``parent``'s children, for the parent's status."""
    if adopted(ctx, parent, child) is None:
        why = problem(ctx, parent, child) or f'{child.KIND} "{child.name}" was not created'
        return Condition(type="Ready", status="False", reason="ChildNotCreated", message=why)
    ready = ready_of(ctx.desired.statuses.get(child.key))
    if ready is None:
        return Condition(
            type="Ready", status="Unknown", reason="NoReady", message=f"{child.KIND} has no Ready condition"
        )
    return ready


def prune(ctx: Context, into: Contribution, owner_kinds: Iterable[str]) -> None:
    """Mark as forgotten the stored children of ``owner_kinds`` that were not generated in this pass."""
    kinds = set(owner_kinds)
    for key, resource in ctx.resources.items():
        ref = controller_of(resource)
        generated = key in ctx.desired.children or key in into.children
        if ref is not None and ref.kind in kinds and not generated:
            into.forgotten.add(key)


def _keep_identity(child: Resource, stored: Resource | None, parent: Resource) -> None:
    """A child keeps the uid, creation time and generation of its stored copy; a new child gets a uid derived
    from its parent's, so that names built from it (consumer groups) are stable from the first pass on."""
    meta = child.metadata
    if stored is not None:
        meta.uid = stored.metadata.uid
        meta.creationTimestamp = stored.metadata.creationTimestamp
        same = stored.model_dump(mode="json", include={"spec"}) == child.model_dump(
            mode="json", include={"spec"}
        )
        meta.generation = stored.metadata.generation + (0 if same else 1)
    if not meta.uid:
        seed = parent.metadata.uid or str(parent.key)
        meta.uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}/{child.KIND}/{child.name}"))
