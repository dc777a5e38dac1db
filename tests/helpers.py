"""Builders for the Knative resources tests apply, and a console beside a test stack."""

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


def channel_doc(
    name: str, namespace: str, template_kind: str | None = "KafkaChannel", **spec: Any
) -> dict[str, Any]:
    """A messaging.knative.dev/v1 Channel; ``template_kind`` None leaves channelTemplate out."""
    if template_kind is not None:
        template: dict[str, Any] = {"apiVersion": "messaging.knative.dev/v1beta1", "kind": template_kind}
        if "template_spec" in spec:
            template["spec"] = spec.pop("template_spec")
        spec["channelTemplate"] = template
    return {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "Channel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def kafka_channel_doc(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "messaging.knative.dev/v1beta1",
        "kind": "KafkaChannel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def in_memory_channel_doc(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "InMemoryChannel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def ref(kind: str, name: str) -> dict[str, Any]:
    """A Destination that references ``kind``/``name`` (apiVersion as Knative YAML would have it)."""
    api_versions = {
        "Broker": "eventing.knative.dev/v1",
        "Channel": "messaging.knative.dev/v1",
        "KafkaChannel": "messaging.knative.dev/v1beta1",
        "Sequence": "flows.knative.dev/v1",
        "Parallel": "flows.knative.dev/v1",
    }
    return {"ref": {"apiVersion": api_versions.get(kind, "v1"), "kind": kind, "name": name}}


def subscription_doc(
    name: str, namespace: str, channel: str, channel_kind: str = "KafkaChannel", **spec: Any
) -> dict[str, Any]:
    """A Subscription; pass ``subscriber``/``reply`` as Destinations (``{"uri": ...}`` or :func:`ref`)."""
    annotations = spec.pop("annotations", {})
    channel_ref = ref(channel_kind, channel)["ref"]
    return {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "Subscription",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"channel": channel_ref, **spec},
    }


def sequence_doc(name: str, namespace: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flows.knative.dev/v1",
        "kind": "Sequence",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"steps": steps, **spec},
    }


def parallel_doc(name: str, namespace: str, branches: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flows.knative.dev/v1",
        "kind": "Parallel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"branches": branches, **spec},
    }


def sink_ref(kind: str, name: str) -> dict[str, Any]:
    versions = {"Broker": "eventing.knative.dev/v1", "KafkaSink": "eventing.knative.dev/v1alpha1"}
    return {"ref": {"apiVersion": versions.get(kind, "v1"), "kind": kind, "name": name}}


def ping_source_doc(name: str, namespace: str, sink: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"sink": sink, **spec},
    }


def container_source_doc(
    name: str, namespace: str, sink: dict[str, Any], command: list[str], **container: Any
) -> dict[str, Any]:
    overrides = container.pop("ceOverrides", None)
    spec: dict[str, Any] = {
        "template": {"spec": {"containers": [{"name": "main", "command": command, **container}]}},
        "sink": sink,
    }
    if overrides is not None:
        spec["ceOverrides"] = overrides
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "ContainerSource",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def sink_binding_doc(name: str, namespace: str, sink: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "SinkBinding",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"sink": sink, **spec},
    }


def kafka_source_doc(
    name: str, namespace: str, bootstrap: str, topics: list[str], sink: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    labels = spec.pop("labels", {})
    return {
        "apiVersion": "sources.knative.dev/v1beta1",
        "kind": "KafkaSource",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"bootstrapServers": [bootstrap], "topics": topics, "sink": sink, **spec},
    }


def kafka_sink_doc(name: str, namespace: str, topic: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1alpha1",
        "kind": "KafkaSink",
        "metadata": {"name": name, "namespace": namespace},
        # No bootstrapServers: keventing's own cluster (a KafkaSink naming another writes there).
        "spec": {"topic": topic, **spec},
    }


def start_console(kev: Any, name: str) -> str:
    """Start ``kev console`` as one more service of ``kev``'s stack (stop it by ``name``); its base URL."""
    from kev.kafka.embedded import free_port
    from kev.stack import Service, kev_command

    port = free_port()
    service = kev.stack.start(
        Service(name, [*kev_command(), "console", "--port", str(port)], f"http://127.0.0.1:{port}/readyz")
    )
    kev.stack.wait_ready(60, [service.name])
    return f"http://127.0.0.1:{port}"
