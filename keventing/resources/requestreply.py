"""eventing.knative.dev/v1alpha1 RequestReply: a synchronous address in front of a Broker. A request event
POSTed to it is put on the Broker with a correlation id (``spec.correlationAttribute``, ``correlationid``);
whoever answers sends an event carrying that id in ``spec.replyAttribute`` (``replyid``) back into the
Broker, and the request's HTTP response is that reply — or 504 once ``spec.timeout`` has passed.
"""

from __future__ import annotations

import re

from pydantic import Field

from keventing.durations import parse_duration
from keventing.resources.base import KReference, Model, Resource, ResourceInvalid, Status
from keventing.resources.delivery import DeliverySpec

DEFAULT_CORRELATION_ATTRIBUTE = "correlationid"
DEFAULT_REPLY_ATTRIBUTE = "replyid"
DEFAULT_TIMEOUT_SECONDS = 30.0
# The most a request may be held open: a RequestReply is for answers a caller waits for.
MAX_TIMEOUT_SECONDS = 600.0
# CloudEvents core attributes: neither id may overwrite one (Knative refuses these, "source" included).
CORE_ATTRIBUTES = ("id", "source", "specversion", "type")
_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_GO_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def timeout_seconds(text: str) -> float:
    """``spec.timeout`` in seconds: ISO-8601 (``PT30S``, as DeliverySpec) or Go's form (``30s``, ``1m30s``), which
    Knative's own RequestReply defaults to; ValueError saying which forms are accepted."""
    value = text.strip()
    if _GO_DURATION.match(value):
        return sum(float(n) * _GO_UNITS[u] for n, u in _GO_PART.findall(value))
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration (ISO-8601 such as PT30S, or 30s, 1m30s, 500ms)"
        ) from None


class RequestReplySpec(Model):
    brokerRef: KReference
    correlationAttribute: str = DEFAULT_CORRELATION_ATTRIBUTE
    replyAttribute: str = DEFAULT_REPLY_ATTRIBUTE
    timeout: str | None = None
    delivery: DeliverySpec | None = None
    # Knative's AES keys for its correlation ids; keventing signs them with the contract key instead.
    secrets: list[str] | None = None


class RequestReply(Resource):
    API_VERSIONS = ("eventing.knative.dev/v1alpha1",)
    KIND = "RequestReply"
    PLURAL = "requestreplies"
    ADDRESSABLE = True

    spec: RequestReplySpec
    status: Status = Field(default_factory=Status)

    @property
    def timeout_seconds(self) -> float:
        return DEFAULT_TIMEOUT_SECONDS if not self.spec.timeout else timeout_seconds(self.spec.timeout)

    def warnings(self) -> list[str]:
        found = []
        if self.spec.secrets:
            found.append(
                "spec.secrets is not used: keventing signs correlation ids with the contract key, not with "
                "AES keys from Secrets"
            )
        if self.spec.delivery is not None:
            found.append(
                "spec.delivery is not applied: a request is written to the Broker's topic directly and its "
                "reply read back from it, with no delivery to retry"
            )
        return found

    def validate_semantics(self) -> None:
        ref = self.spec.brokerRef
        if ref.kind.lower() != "broker":
            raise ResourceInvalid("spec.brokerRef.kind", f"brokerRef kind must be Broker, got {ref.kind!r}")
        if ref.namespace:
            raise ResourceInvalid(
                "spec.brokerRef.namespace", "must not be set: the Broker is in this namespace"
            )
        if not ref.name:
            raise ResourceInvalid("spec.brokerRef.name", "must name a Broker")
        for field, name in (
            ("correlationAttribute", self.spec.correlationAttribute),
            ("replyAttribute", self.spec.replyAttribute),
        ):
            if name in CORE_ATTRIBUTES:
                raise ResourceInvalid(
                    f"spec.{field}",
                    f"{name!r} is a core CloudEvents attribute ({', '.join(CORE_ATTRIBUTES)})",
                )
            if not _ATTRIBUTE_NAME.match(name):
                raise ResourceInvalid(
                    f"spec.{field}", f"{name!r} is not a CloudEvents attribute name (a-z, 0-9, at most 20)"
                )
        if self.spec.correlationAttribute == self.spec.replyAttribute:
            raise ResourceInvalid("spec.replyAttribute", "must differ from spec.correlationAttribute")
        if self.spec.timeout is not None:
            try:
                seconds = timeout_seconds(self.spec.timeout)
            except ValueError as err:
                raise ResourceInvalid("spec.timeout", str(err)) from None
            if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
                raise ResourceInvalid(
                    "spec.timeout", f"must be more than 0 and at most {MAX_TIMEOUT_SECONDS:.0f} seconds"
                )
        if self.spec.delivery is not None:
            self.spec.delivery.validate_at("spec.delivery")


KINDS: tuple[type[Resource], ...] = (RequestReply,)
