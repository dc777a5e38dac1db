"""eventing.knative.dev/v1alpha1 EventPolicy: who may send events to which resources (Knative's authorization).

``spec.to``: the resources it applies to (``ref``s, or ``selector``s by apiVersion/kind and labels); none
means every resource of its namespace. ``spec.from``: the senders it allows, ``sub`` patterns (a trailing
``*`` matches any rest: ``system:serviceaccount:shop:*``) or ``ref``s to senders. ``spec.filters``: what
the events must match besides (the Trigger filter dialects). Policies apply only with authentication-oidc
enabled: the sender is the ``sub`` of its token.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from keventing.resources.base import Model, Resource, ResourceInvalid, Status


class EventPolicyToRef(Model):
    apiVersion: str
    kind: str
    name: str


class EventPolicySelector(Model):
    apiVersion: str | None = None
    kind: str | None = None
    matchLabels: dict[str, str] = Field(default_factory=dict)
    matchExpressions: list[dict[str, Any]] | None = None


class EventPolicySpecTo(Model):
    ref: EventPolicyToRef | None = None
    selector: EventPolicySelector | None = None


class EventPolicyFromRef(Model):
    apiVersion: str
    kind: str
    name: str
    namespace: str | None = None


class EventPolicySpecFrom(Model):
    ref: EventPolicyFromRef | None = None
    sub: str | None = None


class EventPolicySpec(Model):
    to: list[EventPolicySpecTo] | None = None
    from_: list[EventPolicySpecFrom] = Field(default_factory=list, alias="from")
    filters: list[dict[str, Any]] | None = None


class EventPolicyStatus(Status):
    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)

    # The senders' subjects the policy resolved to (its sub patterns, and its refs' identities).
    from_: list[str] | None = Field(default=None, alias="from")


class EventPolicy(Resource):
    API_VERSIONS = ("eventing.knative.dev/v1alpha1",)
    KIND = "EventPolicy"
    PLURAL = "eventpolicies"
    SHORT_NAMES = ("ep",)

    spec: EventPolicySpec
    status: EventPolicyStatus = Field(default_factory=EventPolicyStatus)

    def validate_semantics(self) -> None:
        from keventing.filters import FilterError, validate_filters

        for i, to in enumerate(self.spec.to or []):
            if (to.ref is None) == (to.selector is None):
                raise ResourceInvalid(f"spec.to[{i}]", "expected exactly one of ref or selector")
            if to.selector is not None and to.selector.matchExpressions:
                raise ResourceInvalid(
                    f"spec.to[{i}].selector.matchExpressions", "is not supported: use matchLabels"
                )
        if not self.spec.from_:
            raise ResourceInvalid("spec.from", "must name at least one sender (sub or ref)")
        for i, sender in enumerate(self.spec.from_):
            if (sender.ref is None) == (sender.sub is None):
                raise ResourceInvalid(f"spec.from[{i}]", "expected exactly one of ref or sub")
            if sender.sub is not None and ("*" in sender.sub[:-1] or not sender.sub):
                raise ResourceInvalid(f"spec.from[{i}].sub", "'*' is allowed only at the end of the pattern")
        try:
            validate_filters(self.spec.filters)
        except FilterError as err:
            raise ResourceInvalid("", str(err)) from None


KINDS = (EventPolicy,)
