"""eventing.knative.dev/v1alpha1 EventTransform: an addressable that reshapes each event with a JSONata
expression, then answers with it (a reply, for the Broker or Channel that delivered it) or sends it on to
``spec.sink`` and answers with the sink's reply (itself transformed by ``spec.reply.jsonata``, or
discarded with ``spec.reply.discard``).

JSONata is jsonata-python (a maintained port of the reference implementation): expressions are compiled
here to be checked at apply time, and once per contract change by the receiver, never per event.
"""

from __future__ import annotations

from typing import Any

import jsonata
from pydantic import Field

from keventing.resources.base import Destination, Model, Resource, ResourceInvalid, Status


class Jsonata(Model):
    expression: str


class TransformReply(Model):
    jsonata: Jsonata | None = None
    discard: bool | None = None


class EventTransformSpec(Model):
    jsonata: Jsonata | None = None
    sink: Destination | None = None
    reply: TransformReply | None = None


class EventTransformStatus(Status):
    sinkUri: str | None = None
    sinkCACerts: str | None = None
    # Knative's status names the JSONata deployment it runs; keventing runs none (the receiver transforms).
    jsonata: dict[str, Any] | None = None


def compile_jsonata(expression: str, field: str) -> Any:
    """The compiled expression, or ResourceInvalid naming ``field`` and what JSONata says is wrong."""
    try:
        return jsonata.Jsonata(expression)
    except Exception as err:  # jsonata-python raises its JException, with the position, for syntax errors
        raise ResourceInvalid(field, f"invalid JSONata expression: {err}") from None


class EventTransform(Resource):
    API_VERSIONS = ("eventing.knative.dev/v1alpha1",)
    KIND = "EventTransform"
    PLURAL = "eventtransforms"
    ADDRESSABLE = True

    spec: EventTransformSpec
    status: EventTransformStatus = Field(default_factory=EventTransformStatus)

    def validate_semantics(self) -> None:
        spec = self.spec
        if spec.jsonata is None:
            raise ResourceInvalid("spec.jsonata", "required: keventing transforms with JSONata")
        compile_jsonata(spec.jsonata.expression, "spec.jsonata.expression")
        if spec.sink is not None:
            spec.sink.validate_at("spec.sink")
        reply = spec.reply
        if reply is not None:
            if spec.sink is None:
                raise ResourceInvalid("spec.reply", "only a transform with a sink has replies to handle")
            if reply.discard and reply.jsonata is not None:
                raise ResourceInvalid("spec.reply", "expected exactly one, got both: discard, jsonata")
            if reply.jsonata is not None:
                compile_jsonata(reply.jsonata.expression, "spec.reply.jsonata.expression")


KINDS: tuple[type[Resource], ...] = (EventTransform,)
