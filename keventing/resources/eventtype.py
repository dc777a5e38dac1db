"""eventing.knative.dev EventType: a (type, source) pair a Broker is known to carry — the event registry."""

from __future__ import annotations

from pydantic import Field

from keventing.resources.base import KReference, Model, Resource, ResourceInvalid


class EventTypeSpec(Model):
    type: str
    source: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    schemaData: str | None = None
    # Deprecated in v1beta2 in favour of reference; still accepted.
    broker: str | None = None
    reference: KReference | None = None
    description: str | None = None


class EventType(Resource):
    API_VERSIONS = ("eventing.knative.dev/v1beta2", "eventing.knative.dev/v1beta1")
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

    def validate_semantics(self) -> None:
        if not self.spec.type:
            raise ResourceInvalid("spec.type", "missing field(s)")


KINDS: tuple[type[Resource], ...] = (EventType,)
