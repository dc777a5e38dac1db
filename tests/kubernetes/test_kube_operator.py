"""The operator on a real kube-apiserver: Knative YAML applied with kubectl becomes Ready and delivers.

The data plane (receiver, dispatcher) runs as local processes on the session's Kafka, as `kev up
--kubernetes` runs it; the operator is `kev controller --kubernetes` with the token of the chart's
ServiceAccount, so that every test here also proves the chart's RBAC sufficient.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubectl import Kubectl

from kev.kafka.embedded import free_port
from kev.stack import Stack
from keventing import events, naming
from keventing.kafka.client import admin_client, group_positioned

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def operator_stack(
    operator_env: dict[str, str], kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    stack = Stack(
        bootstrap_servers=kafka,
        log_dir=tmp_path_factory.mktemp("operator-logs"),
        instance=f"kube-{uuid.uuid4().hex[:8]}",
        receiver_port=free_port(),
        dispatcher_port=free_port(),
        controller_port=free_port(),
        sources_port=free_port(),
        extra_env=operator_env,
    )
    stack.start_all()
    try:
        stack.wait_ready(timeout=90)
        yield stack
    finally:
        stack.stop_all()


def _broker(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": namespace},
    }


def _trigger(name: str, namespace: str, broker: str, uri: str, **spec: object) -> dict:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"broker": broker, "subscriber": {"uri": uri}, **spec},
    }


def _send(stack: Stack, url: str, event_type: str) -> str:
    import httpx

    event_id = uuid.uuid4().hex
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/kube-test",
        "ce-type": event_type,
        "content-type": "application/json",
    }
    # The Broker's address is the receiver's public URL; the test reaches the local receiver directly.
    local = url.replace(stack.ingress_url, f"http://127.0.0.1:{stack.receiver_port}")
    response = httpx.post(local, headers=headers, content=b'{"hello":"kubernetes"}', timeout=10)
    assert response.status_code == 202, response.text
    return event_id


def test_broker_and_trigger_applied_with_kubectl_become_ready_and_deliver(
    operator_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any, kafka: str
) -> None:
    path = f"kube-{namespace}"
    kubectl.apply(
        _broker("default", namespace),
        _trigger(
            "orders",
            namespace,
            "default",
            sink.url(path),
            filters=[{"exact": {"type": "order.created"}}],
        ),
    )
    broker = kubectl.wait_ready("broker", "default", namespace)
    url = broker["status"]["address"]["url"]
    assert url == f"{operator_stack.ingress_url}/{namespace}/default"
    conditions = {c["type"]: c for c in broker["status"]["conditions"]}
    assert {"Ready", "TopicReady", "Addressable"} <= set(conditions)
    assert all("lastTransitionTime" in c for c in conditions.values())
    assert broker["status"]["observedGeneration"] == broker["metadata"]["generation"]

    trigger = kubectl.wait_ready("trigger", "orders", namespace)
    assert trigger["status"]["subscriberUri"] == sink.url(path)
    # A new group starts at the latest record (Knative's default): send once the dispatcher's group is in place.
    _wait_positioned(
        kafka, naming.trigger_group(namespace, "orders"), naming.broker_topic(namespace, "default")
    )

    _send(operator_stack, url, "order.shipped")  # filtered out
    wanted = _send(operator_stack, url, "order.created")
    received = sink.wait_for(path, 1, timeout=60)
    got = [events.from_http(r.headers, r.body) for r in received]
    assert [e.id for e in got] == [wanted]


def test_trigger_without_its_broker_is_not_ready_until_the_broker_exists(
    operator_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any
) -> None:
    kubectl.apply(_trigger("early", namespace, "later", sink.url("unused")))
    trigger = kubectl.wait_for_condition("trigger", "early", namespace, "Ready", "False")
    ready = next(c for c in trigger["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "BrokerDoesNotExist"
    assert "later" in ready["message"]
    kubectl.apply(_broker("later", namespace))
    kubectl.wait_ready("trigger", "early", namespace)


def test_deleting_a_broker_deletes_its_topic_after_the_finalizer_ran(
    operator_stack: Stack, kubectl: Kubectl, namespace: str, kafka: str
) -> None:
    kubectl.apply(_broker("doomed", namespace))
    broker = kubectl.wait_ready("broker", "doomed", namespace)
    assert broker["metadata"]["finalizers"] == ["keventing.knative.dev/cleanup"]
    topic = naming.broker_topic(namespace, "doomed")
    assert topic in _topics(kafka)
    kubectl.run("delete", "broker", "doomed", "-n", namespace, "--wait=true", "--timeout=60s")
    assert kubectl.get("broker", "doomed", namespace) is None
    assert topic not in _topics(kafka)


def test_an_invalid_object_is_not_ready_with_the_field_that_is_wrong(
    operator_stack: Stack, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(
        _trigger("bad", namespace, "default", "http://127.0.0.1:1/", delivery={"backoffDelay": "soon"})
    )
    trigger = kubectl.wait_for_condition("trigger", "bad", namespace, "Ready", "False")
    ready = next(c for c in trigger["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "backoffDelay" in ready["message"]


def test_a_sequence_owns_real_channels_and_subscriptions_that_are_collected_with_it(
    operator_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any
) -> None:
    sequence = {
        "apiVersion": "flows.knative.dev/v1",
        "kind": "Sequence",
        "metadata": {"name": "pipeline", "namespace": namespace},
        "spec": {
            "channelTemplate": {"apiVersion": "messaging.knative.dev/v1beta1", "kind": "KafkaChannel"},
            "steps": [{"uri": sink.url(f"step-{namespace}")}],
            "reply": {"uri": sink.url(f"reply-{namespace}")},
        },
    }
    kubectl.apply(sequence)
    kubectl.wait_ready("sequence", "pipeline", namespace, timeout=90)
    channels = kubectl.list("kafkachannels", namespace)
    subscriptions = kubectl.list("subscriptions", namespace)
    assert channels and subscriptions
    seq_uid = kubectl.get("sequence", "pipeline", namespace)["metadata"]["uid"]  # type: ignore[index]
    for child in [*channels, *subscriptions]:
        owners = child["metadata"]["ownerReferences"]
        assert any(o["uid"] == seq_uid and o.get("controller") for o in owners), child["metadata"]["name"]
    kubectl.run("delete", "sequence", "pipeline", "-n", namespace, "--wait=true", "--timeout=60s")
    deadline = time.monotonic() + 60
    while kubectl.list("subscriptions", namespace) or kubectl.list("kafkachannels", namespace):
        assert time.monotonic() < deadline, "the Sequence's children were not garbage-collected"
        time.sleep(0.5)


def _wait_positioned(bootstrap: str, group: str, topic: str, timeout: float = 60.0) -> None:
    import asyncio

    async def positioned() -> bool:
        async with admin_client(bootstrap) as admin:
            return await group_positioned(admin, group, topic)

    deadline = time.monotonic() + timeout
    while not asyncio.run(positioned()):
        assert time.monotonic() < deadline, f"consumer group {group} not positioned on {topic}"
        time.sleep(0.3)


def _topics(bootstrap: str) -> set[str]:
    import asyncio

    async def list_topics() -> set[str]:
        async with admin_client(bootstrap) as admin:
            return set(await admin.list_topics())

    return asyncio.run(list_topics())
