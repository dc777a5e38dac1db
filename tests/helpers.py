"""Builders for the Knative resources tests apply."""

from __future__ import annotations

from typing import Any


def broker_doc(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def trigger_doc(name: str, namespace: str, broker: str, uri: str, **spec: Any) -> dict[str, Any]:
    annotations = spec.pop("annotations", {})
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"broker": broker, "subscriber": {"uri": uri}, **spec},
    }
