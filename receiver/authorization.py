"""Who may send to an ingress (authentication-oidc): the EventPolicies the contract lists for it, else
Knative's default authorization mode (``allow-same-namespace``, ``allow-all``, ``deny-all``).

A sender is the ``sub`` of its verified token. It is allowed when one applying policy allows its subject
and the event matches that policy's filters; with none applying, the default mode decides (same namespace:
a subject ``system:serviceaccount:<the resource's namespace>:*``). Filters are compiled once per policy
version, not per event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from keventing.contract import Ingress, IngressPolicy
from keventing.filters.dialects import Filter, compile_trigger_filter

EventCheck = Callable[[Mapping[str, object]], str | None]


@dataclass(frozen=True)
class Decision:
    """``refusal``: why the sender is refused now (403); else ``check``: what its event must pass, if
    anything (None: allowed whatever it sends)."""

    refusal: str | None = None
    check: EventCheck | None = None


def subject_matches(pattern: str, subject: str) -> bool:
    if pattern.endswith("*"):
        return subject.startswith(pattern[:-1])
    return subject == pattern


class Authorizer:
    def __init__(self, default_mode: str) -> None:
        self.default_mode = default_mode
        # By the policy object the contract holds (its filters are lists, so it is not hashable): a new
        # contract version brings new objects, compiled once each.
        self._filters: dict[int, tuple[IngressPolicy, Filter]] = {}

    def decide(self, ingress: Ingress, subject: str) -> Decision:
        described = f"{ingress.kind} {ingress.namespace}/{ingress.name}"
        if ingress.policies is None:
            mode = ingress.default_authorization_mode or self.default_mode  # the controller's, if it says
            return self._default(described, ingress.namespace, subject, mode)
        allowing = [p for p in ingress.policies if any(subject_matches(s, subject) for s in p.subs)]
        if not allowing:
            names = ", ".join(p.name for p in ingress.policies)
            return Decision(
                refusal=f"{subject} is not allowed to send to {described} by its EventPolicies ({names})"
            )
        if any(not p.filters for p in allowing):
            return Decision()
        filters = [self._filter(p) for p in allowing]
        names = ", ".join(p.name for p in allowing)

        def check(attributes: Mapping[str, object]) -> str | None:
            if any(f(attributes) for f in filters):
                return None
            return f"the event does not match the filters of the EventPolicies allowing {subject} ({names})"

        return Decision(check=check)

    def _default(self, described: str, namespace: str, subject: str, mode: str) -> Decision:
        if mode == "allow-all":
            return Decision()
        if mode == "allow-same-namespace" and subject.startswith(f"system:serviceaccount:{namespace}:"):
            return Decision()
        return Decision(
            refusal=f"{subject} is not allowed to send to {described}: no EventPolicy applies and the default "
            f"authorization mode is {mode}"
        )

    def _filter(self, policy: IngressPolicy) -> Filter:
        known = self._filters.get(id(policy))
        if known is not None and known[0] is policy:
            return known[1]
        if len(self._filters) > 10_000:
            self._filters.clear()  # old versions of policies: never grows without bound
        compiled = compile_trigger_filter(None, policy.filters)
        self._filters[id(policy)] = (policy, compiled)
        return compiled
