"""Converting between Kubernetes API objects and keventing's resource models (pure, no I/O).

An object read from the API server carries fields the models do not know (resourceVersion, managedFields)
and a status keventing wrote itself; the reconciler gets the user's intent, and status patches set only
what the reconciler decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keventing.resources import Resource, ResourceInvalid, ResourceKey, Status, parse_resource

# Metadata the reconciler has use for; the rest (managedFields, resourceVersion…) is the API server's.
_META_KEPT = ("name", "namespace", "labels", "annotations", "generation", "uid", "creationTimestamp")


class ObjectInvalid(ResourceInvalid):
    """An object in the cluster that keventing's models reject; ``key`` names it for its status."""

    def __init__(self, key: ResourceKey, error: ResourceInvalid) -> None:
        super().__init__(error.field, error.reason)
        self.key = key


def key_of(body: Mapping[str, Any]) -> ResourceKey:
    meta = body.get("metadata") or {}
    return ResourceKey(body.get("kind", ""), meta.get("namespace") or "default", meta.get("name", ""))


def to_resource(body: Mapping[str, Any]) -> Resource:
    """The model of an API object, by its schema only: semantic checks make a resource not Ready instead."""
    meta = body.get("metadata") or {}
    metadata: dict[str, Any] = {k: meta[k] for k in _META_KEPT if meta.get(k) is not None}
    document: dict[str, Any] = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": metadata,
    }
    owners = [
        {k: ref[k] for k in ("apiVersion", "kind", "name", "uid", "controller") if k in ref}
        for ref in meta.get("ownerReferences") or []
    ]
    if owners:
        metadata["ownerReferences"] = owners
    for field in ("spec", "data"):
        if field in body:
            document[field] = body[field]
    try:
        return parse_resource(document, semantics=False)
    except ResourceInvalid as err:
        raise ObjectInvalid(key_of(body), err) from err


def status_document(status: Status) -> dict[str, Any]:
    return status.model_dump(mode="json", exclude_none=True)


def status_patch(wanted: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any] | None:
    """A JSON merge patch from the current status to the wanted one, or None when they are the same.

    Fields the reconciler no longer sets (an address once a Broker is not Ready) are removed with null.
    """
    current = current or {}
    if all(current.get(k) == v for k, v in wanted.items()) and set(current) <= set(wanted):
        return None
    patch: dict[str, Any] = dict(wanted)
    for key in current:
        if key not in wanted:
            patch[key] = None
    return {"status": patch}


def child_object(child: Resource) -> dict[str, Any]:
    """The object to server-side apply for a generated child (a Sequence's Channel, say)."""
    document = child.to_document(with_status=False)
    meta = document["metadata"]
    for generated in ("uid", "creationTimestamp", "generation"):
        meta.pop(generated, None)
    return document
