"""Every kind keventing serves, how the CLI names them, and ``parse_resource``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from keventing.nesting import nesting_exceeds
from keventing.resources import (
    eventing,
    eventpolicy,
    eventtype,
    flows,
    integrations,
    jobsinks,
    kafka,
    messaging,
    requestreply,
    sources,
    transforms,
)
from keventing.resources.base import Resource, ResourceInvalid

# Each resource module lists the kinds it defines in its own KINDS tuple.
KINDS: dict[str, type[Resource]] = {
    cls.KIND: cls
    for module in (
        eventing,
        messaging,
        flows,
        kafka,
        sources,
        integrations,
        jobsinks,
        transforms,
        requestreply,
        eventtype,
        eventpolicy,
    )
    for cls in module.KINDS
}

# Far deeper than any real resource (a filter nested 30 levels is ~60 here); refused before pydantic and the
# filter compiler recurse into it.
MAX_DOCUMENT_DEPTH = 128


class UnknownKind(ValueError):
    pass


def kind_for(name: str) -> type[Resource]:
    """Resolve a kind the way kubectl does: ``broker``, ``brokers``, ``Broker``, ``brokers.eventing.knative.dev``."""
    wanted = name.split(".", 1)[0].lower()
    for cls in KINDS.values():
        if wanted in (cls.KIND.lower(), cls.PLURAL, *cls.SHORT_NAMES):
            return cls
    known = ", ".join(sorted(cls.PLURAL for cls in KINDS.values()))
    raise UnknownKind(f"unknown kind {name!r}; known kinds: {known}")


def parse_resource(document: dict[str, Any], semantics: bool = True) -> Resource:
    """Build and validate the model for one Knative YAML document.

    ``semantics=False`` checks only the schema: the controller reads stored resources that way, so that a
    resource which passed an older validation shows up as not Ready with the reason instead of vanishing.
    """
    if not isinstance(document, dict):
        raise ResourceInvalid("", "a resource must be a YAML mapping")
    kind = document.get("kind")
    api_version = document.get("apiVersion")
    if not kind:
        raise ResourceInvalid("kind", "is required")
    if not api_version:
        raise ResourceInvalid("apiVersion", "is required")
    cls = KINDS.get(kind)
    if cls is None:
        raise ResourceInvalid("kind", f"{kind!r} is not a kind keventing serves ({', '.join(sorted(KINDS))})")
    if api_version not in cls.API_VERSIONS:
        raise ResourceInvalid(
            "apiVersion", f"{api_version!r} is not served for {kind}; use {' or '.join(cls.API_VERSIONS)}"
        )
    name = (document.get("metadata") or {}).get("name")
    if not name:
        raise ResourceInvalid("metadata.name", "is required")
    if nesting_exceeds(document, MAX_DOCUMENT_DEPTH):
        raise ResourceInvalid("", f"the document is nested more than {MAX_DOCUMENT_DEPTH} levels deep")
    try:
        resource = cls.model_validate(document)
    except ValidationError as err:
        first = err.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            # Never silently ignored: a field keventing does not implement is refused, by name.
            raise ResourceInvalid(
                path, f"unknown field: keventing does not serve it for {kind} (`kev explain {kind.lower()}`)"
            ) from None
        raise ResourceInvalid(path, first["msg"]) from None
    if semantics:
        resource.validate_identity()
        resource.validate_semantics()
    return resource
