"""Knative-style conditions: dependents, Ready derived from them, propagation, lastTransitionTime.

Every phase builds a resource's conditions with :class:`Conditions` (Knative's ConditionSet); the adapters
keep transition times with :func:`keep_transition_times` when they write a status.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from keventing.resources import Condition, Resource, Status

READY = "Ready"


class Conditions:
    """Collects a resource's conditions and derives Ready from them, the way Knative's ConditionSet does."""

    def __init__(self) -> None:
        self._items: dict[str, Condition] = {}

    def true(self, type_: str, reason: str | None = None, message: str | None = None) -> None:
        self._items[type_] = Condition(type=type_, status="True", reason=reason, message=message)

    def false(self, type_: str, reason: str, message: str) -> None:
        self._items[type_] = Condition(type=type_, status="False", reason=reason, message=message)

    def unknown(self, type_: str, reason: str, message: str) -> None:
        self._items[type_] = Condition(type=type_, status="Unknown", reason=reason, message=message)

    def propagate(self, type_: str, ready: Condition, reason: str, message: str) -> None:
        """Set ``type_`` from a dependency's Ready condition: True as it is, otherwise with ``reason`` and a
        message that names the dependency and says why it is not ready."""
        if ready.status == "True":
            self.true(type_)
            return
        why = ready.message or ready.reason
        text = f"{message}: {why}" if why else message
        if ready.status == "False":
            self.false(type_, reason, text)
        else:
            self.unknown(type_, reason, text)

    def aggregate(self, type_: str, reason: str, readiness: Sequence[tuple[Resource, Condition]]) -> None:
        """True when every child is ready; otherwise propagated from the first child that is False (or, if
        none is, the first that is not True)."""
        not_ready = [(child, ready) for child, ready in readiness if ready.status != "True"]
        if not not_ready:
            self.true(type_)
            return
        child, ready = next(((c, r) for c, r in not_ready if r.status == "False"), not_ready[0])
        self.propagate(type_, ready, reason, f'{child.KIND} "{child.name}" is not ready')

    def finish(self, dependents: list[str]) -> list[Condition]:
        """Fill missing dependents as Unknown and compute Ready from the first that is not True."""
        out = []
        for type_ in dependents:
            out.append(
                self._items.get(type_) or Condition(type=type_, status="Unknown", reason="NotReconciled")
            )
        blocking = next((c for c in out if c.status != "True"), None)
        if blocking is None:
            ready = Condition(type=READY, status="True")
        else:
            ready = Condition(
                type=READY, status=blocking.status, reason=blocking.reason, message=blocking.message
            )
        return [ready, *out]


def invalid(message: str) -> list[Condition]:
    """The conditions of a resource whose spec is invalid: it takes no part in reconciliation."""
    return [Condition(type=READY, status="False", reason="InvalidSpec", message=message)]


def ready_of(status: Status | None) -> Condition | None:
    """A status's Ready condition without its transition time (a dependent's transition is its own)."""
    ready = status.condition(READY) if status is not None else None
    return ready.model_copy(update={"lastTransitionTime": None}) if ready is not None else None


def keep_transition_times(status: Status, previous: Iterable[Condition], now: str) -> Status:
    """A condition keeps its lastTransitionTime until its status changes (Knative's semantics); ``previous``
    are the conditions last written, ``now`` the time of a transition."""
    before = {c.type: c for c in previous}
    conditions = []
    for condition in status.conditions:
        old = before.get(condition.type)
        when = old.lastTransitionTime if old is not None and old.status == condition.status else now
        conditions.append(condition.model_copy(update={"lastTransitionTime": when}))
    return status.model_copy(update={"conditions": conditions})
