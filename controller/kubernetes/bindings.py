"""SinkBinding on Kubernetes, the pure part: which objects a binding's subject names, and how their pod
templates change when they are bound (``K_SINK``, ``K_CE_OVERRIDES`` in every container) or unbound.

The webhook (:mod:`controller.kubernetes.webhook`) applies this to objects being admitted; the binder
(:mod:`controller.kubernetes.binder`) applies it to the objects that already exist.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from keventing.binding import K_CE_OVERRIDES, K_SINK, binding_env
from keventing.resources import ResourceInvalid, ResourceKey
from keventing.resources.sources import BindingSubject

BOUND_ENV = (K_SINK, K_CE_OVERRIDES)


class SubjectKind(NamedTuple):
    """A kind a SinkBinding may bind: where it is served and where its pod spec lives."""

    group: str
    version: str
    plural: str
    kind: str
    pod_spec_path: tuple[str, ...]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


SUBJECT_KINDS: dict[str, SubjectKind] = {
    k.kind: k
    for k in (
        SubjectKind("apps", "v1", "deployments", "Deployment", ("spec", "template", "spec")),
        SubjectKind("apps", "v1", "statefulsets", "StatefulSet", ("spec", "template", "spec")),
        SubjectKind("apps", "v1", "daemonsets", "DaemonSet", ("spec", "template", "spec")),
        SubjectKind("batch", "v1", "jobs", "Job", ("spec", "template", "spec")),
        SubjectKind(
            "batch", "v1", "cronjobs", "CronJob", ("spec", "jobTemplate", "spec", "template", "spec")
        ),
        SubjectKind("", "v1", "pods", "Pod", ("spec",)),
    )
}


class SubjectInvalid(ValueError):
    """A subject keventing cannot bind (an unknown kind, neither name nor selector)."""


@dataclass(frozen=True)
class Binding:
    """One SinkBinding as the webhook and the binder use it: whom it binds, and to what."""

    key: ResourceKey
    kind: SubjectKind
    name: str | None
    selector: Mapping[str, Any] | None
    # None while the sink does not resolve: then the subjects carry nothing of this binding.
    sink: str | None
    ce_overrides: Mapping[str, str]

    @property
    def env(self) -> dict[str, str] | None:
        return binding_env(self.sink, self.ce_overrides) if self.sink else None

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if obj.get("kind") != self.kind.kind or (meta.get("namespace") or "default") != self.key.namespace:
            return False
        if self.name is not None:
            return bool(meta.get("name") == self.name)
        return selector_matches(self.selector or {}, meta.get("labels") or {})


def binding_of(body: Mapping[str, Any]) -> Binding:
    """The :class:`Binding` of a SinkBinding object (its spec, and the ``status.sinkUri`` the operator wrote)."""
    meta = body.get("metadata") or {}
    key = ResourceKey("SinkBinding", meta.get("namespace") or "default", meta.get("name", ""))
    spec = body.get("spec") or {}
    subject = BindingSubject.model_validate(spec.get("subject") or {})
    try:
        subject.validate_at("spec.subject")
    except ResourceInvalid as err:
        raise SubjectInvalid(str(err)) from None
    kind = SUBJECT_KINDS[subject.kind or ""]
    name, selector = subject.name, subject.selector
    overrides = (spec.get("ceOverrides") or {}).get("extensions") or {}
    sink = (body.get("status") or {}).get("sinkUri")
    return Binding(key, kind, name, selector, sink, {str(k): str(v) for k, v in overrides.items()})


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against an object's labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def pod_spec_of(obj: Mapping[str, Any], kind: SubjectKind) -> Mapping[str, Any] | None:
    node: Any = obj
    for part in kind.pod_spec_path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Mapping) else None


def bound_containers(
    pod_spec: Mapping[str, Any], env: Mapping[str, str] | None
) -> dict[str, list[dict[str, Any]]]:
    """The pod spec's container lists with the binding's variables set (``env``) or removed (None).

    Every container and init container gets them, replacing any earlier value of the same name, as Knative's
    SinkBinding does; nothing else in the pod spec changes.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for field in ("containers", "initContainers"):
        if field not in pod_spec:
            continue
        containers = copy.deepcopy(list(pod_spec[field] or []))
        for container in containers:
            kept = [var for var in container.get("env") or [] if var.get("name") not in BOUND_ENV]
            kept.extend({"name": name, "value": value} for name, value in (env or {}).items())
            if kept:
                container["env"] = kept
            else:
                container.pop("env", None)
        out[field] = containers
    return out


def desired_env(obj: Mapping[str, Any], bindings: Iterable[Binding]) -> dict[str, str] | None:
    """What the object's containers should carry: the first matching binding's variables (by key, so
    that two bindings for one subject resolve the same way everywhere), or None."""
    for binding in sorted(bindings, key=lambda b: str(b.key)):
        if binding.env is not None and binding.matches(obj):
            return binding.env
    return None


def pod_spec_patch(
    obj: Mapping[str, Any], kind: SubjectKind, env: Mapping[str, str] | None
) -> list[dict[str, Any]]:
    """A JSON patch (RFC 6902) that binds (or with None unbinds) the object; empty when nothing changes."""
    pod_spec = pod_spec_of(obj, kind)
    if pod_spec is None:
        return []
    path = "/" + "/".join(kind.pod_spec_path)
    ops: list[dict[str, Any]] = []
    for field, containers in bound_containers(pod_spec, env).items():
        if containers != pod_spec.get(field):
            ops.append({"op": "replace", "path": f"{path}/{field}", "value": containers})
    return ops
