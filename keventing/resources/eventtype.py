"""eventing.knative.dev EventType: a (type, source) pair a Broker is known to carry — the event registry.

Three versions are served, as Knative serves them: ``v1beta2`` (stored, and what the operator reads and
writes) and ``v1beta1`` describe the events by ``spec.type``, ``source`` and ``schema``; ``v1beta3`` by their
CloudEvents attributes (``spec.attributes``: name, value, required). One model reads all three and fills both forms, so keventing reads ``type`` and ``source`` the
same way whichever version a user wrote; :func:`convert_document` turns one version's document into
another's, as Knative's conversion webhook does (controller/kubernetes/webhook.py serves it).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field, model_validator

from keventing.resources.base import KReference, Model, Resource, ResourceInvalid

V1BETA3 = "eventing.knative.dev/v1beta3"
V1BETA2 = "eventing.knative.dev/v1beta2"
V1BETA1 = "eventing.knative.dev/v1beta1"
# The v1beta3 attributes the older versions have fields for.
ATTRIBUTE_FIELDS = {"type": "type", "source": "source", "dataschema": "schema"}


class EventAttribute(Model):
    """One CloudEvents attribute an EventType's events carry (v1beta3); ``value`` may be a template."""

    name: str
    value: str | None = None
    required: bool | None = None


class EventTypeSpec(Model):
    type: str | None = None
    source: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    schemaData: str | None = None
    # Deprecated in v1beta2 in favour of reference; still accepted.
    broker: str | None = None
    reference: KReference | None = None
    description: str | None = None
    attributes: list[EventAttribute] | None = None

    @model_validator(mode="after")
    def _both_forms(self) -> EventTypeSpec:
        """Fill the fields from the attributes (v1beta3), or the attributes from the fields (older)."""
        if self.attributes is not None:
            values = {a.name: a.value for a in self.attributes}
            for attribute, field in ATTRIBUTE_FIELDS.items():
                alias = "schema_" if field == "schema" else field
                if getattr(self, alias) is None and values.get(attribute):
                    setattr(self, alias, values[attribute])
        elif self.type is not None:
            self.attributes = attributes_of(self.type, self.source, self.schema_)
        return self


def attributes_of(type_: str, source: str | None, schema: str | None) -> list[EventAttribute]:
    """The v1beta3 attributes of an older version's ``type``, ``source`` and ``schema``."""
    attributes = [EventAttribute(name="type", value=type_, required=True)]
    if source:
        attributes.append(EventAttribute(name="source", value=source, required=True))
    if schema:
        attributes.append(EventAttribute(name="dataschema", value=schema, required=False))
    return attributes


class EventType(Resource):
    API_VERSIONS = (V1BETA2, V1BETA3, V1BETA1)
    KIND = "EventType"
    PLURAL = "eventtypes"
    SHORT_NAMES = ("et",)

    spec: EventTypeSpec

    @property
    def reference(self) -> KReference | None:
        """What the EventType belongs to: ``reference``, or the Broker named by the deprecated ``broker``."""
        if self.spec.reference is not None:
            return self.spec.reference
        if self.spec.broker:
            return KReference(apiVersion="eventing.knative.dev/v1", kind="Broker", name=self.spec.broker)
        return None

    def to_document(self, with_status: bool = True) -> dict[str, Any]:
        """The document in its own version's form (attributes for v1beta3, fields for the older ones)."""
        return convert_document(super().to_document(with_status), self.apiVersion)

    def validate_semantics(self) -> None:
        if not self.spec.type:
            where = "spec.attributes" if self.apiVersion == V1BETA3 else "spec.type"
            message = (
                'an attribute named "type" with a value' if where == "spec.attributes" else "missing field(s)"
            )
            raise ResourceInvalid(where, message)


def convert_document(document: dict[str, Any], api_version: str) -> dict[str, Any]:
    """An EventType document (any served version) as ``api_version`` has it.

    To v1beta3: ``type``, ``source`` and ``schema`` become attributes, the deprecated ``broker`` a
    ``reference``. From v1beta3: the ``type``, ``source`` and ``dataschema`` attributes become fields, and
    the others are dropped, since the older versions have no place for them (as in Knative).
    """
    if api_version not in EventType.API_VERSIONS:
        raise ValueError(
            f"{api_version!r} is not a version of EventType; use {' or '.join(EventType.API_VERSIONS)}"
        )
    converted = copy.deepcopy(document)
    converted["apiVersion"] = api_version
    spec: dict[str, Any] = converted.get("spec") or {}
    if api_version == V1BETA3:
        attributes = spec.get("attributes")
        if not attributes and spec.get("type"):
            attributes = [
                a.model_dump(exclude_none=True)
                for a in attributes_of(spec["type"], spec.get("source"), spec.get("schema"))
            ]
        if spec.get("broker") and not spec.get("reference"):
            spec["reference"] = {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Broker",
                "name": spec["broker"],
            }
        for field in ("type", "source", "schema", "schemaData", "broker"):
            spec.pop(field, None)
        if attributes:
            spec["attributes"] = attributes
    else:
        attributes = spec.pop("attributes", None) or []
        values = {a.get("name"): a.get("value") for a in attributes if isinstance(a, dict)}
        for attribute, field in ATTRIBUTE_FIELDS.items():
            if not spec.get(field) and values.get(attribute):
                spec[field] = values[attribute]
    if "spec" in converted or spec:
        converted["spec"] = spec
    return converted


KINDS: tuple[type[Resource], ...] = (EventType,)
