"""The operator's configuration from Knative's ConfigMaps, on a real kube-apiserver: config-br-defaults (a
Broker's class and delivery when it names none), a Broker's spec.config (its topic's partitions), and the
changes to them taking effect without a restart.

The operator runs with the chart's RBAC (see tests/kube_fixtures.py) and its own system namespace, so that
the config-br-defaults written here reaches no other module's operator.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kafka_security import SecuredKafka
from kube_stack import running_stack
from kubectl import Kubectl

from kev.stack import Stack
from keventing import naming
from keventing.contract import ContractEntry
from keventing.kafka.client import admin_client
from keventing.kafka.compacted import CompactedTopic

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(600)]

BROKER_CLASS = "eventing.knative.dev/broker.class"


@pytest.fixture(scope="module")
def system_namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"system-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl.run("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def config_stack(
    operator_env: dict[str, str],
    kafka: str,
    system_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    env = {**operator_env, "KEVENTING_SYSTEM_NAMESPACE": system_namespace}
    with running_stack(kafka, tmp_path_factory.mktemp("config-logs"), env) as stack:
        yield stack


def _config_map(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def _broker_defaults(system_namespace: str, document: dict[str, Any]) -> dict[str, Any]:
    return _config_map(
        "config-br-defaults", system_namespace, {"default-br-config": yaml.safe_dump(document)}
    )


def _broker(
    name: str, namespace: str, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": metadata, "spec": spec}


def _trigger(name: str, namespace: str, broker: str, uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"broker": broker, "subscriber": {"uri": uri}},
    }


def _contract_entry(stack: Stack, kafka: str, key: str, timeout: float = 60.0) -> ContractEntry:
    topic = CompactedTopic(kafka, f"{stack.instance}.contract")
    deadline = time.monotonic() + timeout
    while (value := asyncio.run(topic.snapshot()).get(key)) is None:
        assert time.monotonic() < deadline, f"no contract entry {key}"
        time.sleep(0.5)
    return ContractEntry.decode(value)


def _partitions(kafka: str, topic: str) -> int:
    async def describe() -> int:
        async with admin_client(kafka) as admin:
            [description] = await admin.describe_topics([topic])
            return len(description["partitions"])

    return asyncio.run(describe())


def test_a_broker_without_a_class_is_claimed_per_config_br_defaults_with_its_default_delivery(
    config_stack: Stack, kubectl: Kubectl, namespace: str, system_namespace: str, kafka: str
) -> None:
    delivery = {"retry": 4, "backoffPolicy": "linear", "backoffDelay": "PT0.5S"}
    kubectl.apply(
        _broker_defaults(system_namespace, {"clusterDefault": {"brokerClass": "Kafka", "delivery": delivery}})
    )
    kubectl.apply(_broker("default", namespace), _trigger("t", namespace, "default", "http://127.0.0.1:1/"))
    broker = kubectl.wait_ready("broker", "default", namespace)
    # The class is written onto the Broker, as Knative's defaulting does: a later default cannot take it.
    assert broker["metadata"]["annotations"][BROKER_CLASS] == "Kafka"
    kubectl.wait_ready("trigger", "t", namespace)
    egress = _contract_entry(config_stack, kafka, f"Trigger/{namespace}/t").egress
    assert egress is not None
    assert (egress.delivery.retry, egress.delivery.backoff_policy, egress.delivery.backoff_delay) == (
        4,
        "linear",
        0.5,
    )


def test_a_broker_whose_default_class_is_another_is_left_alone_until_the_default_changes(
    config_stack: Stack, kubectl: Kubectl, namespace: str, system_namespace: str
) -> None:
    theirs = {
        "clusterDefault": {"brokerClass": "Kafka"},
        "namespaceDefaults": {namespace: {"brokerClass": "MTChannelBasedBroker"}},
    }
    kubectl.apply(_broker_defaults(system_namespace, theirs))
    kubectl.apply(_broker("theirs", namespace))
    # A Broker applied after it, of keventing's class, is Ready: the pass that made it so saw the other one.
    kubectl.apply(_broker("ours", namespace, {BROKER_CLASS: "Kafka"}))
    kubectl.wait_ready("broker", "ours", namespace)
    left = kubectl.get("broker", "theirs", namespace)
    assert left is not None
    assert "status" not in left or not left["status"], left["status"]
    assert not left["metadata"].get("finalizers"), left["metadata"]
    assert BROKER_CLASS not in (left["metadata"].get("annotations") or {})
    assert naming.broker_topic(namespace, "theirs") not in _topics_named(config_stack, namespace)

    # The namespace's default goes: the watched ConfigMap's change makes keventing claim the Broker.
    kubectl.apply(_broker_defaults(system_namespace, {"clusterDefault": {"brokerClass": "Kafka"}}))
    claimed = kubectl.wait_ready("broker", "theirs", namespace)
    assert claimed["metadata"]["annotations"][BROKER_CLASS] == "Kafka"


def _topics_named(stack: Stack, namespace: str) -> set[str]:
    async def topics() -> set[str]:
        async with admin_client(stack.bootstrap_servers) as admin:
            return {t for t in await admin.list_topics() if namespace in t}

    return asyncio.run(topics())


def test_a_broker_s_spec_config_sets_its_topic_partitions(
    config_stack: Stack, kubectl: Kubectl, namespace: str, kafka: str
) -> None:
    config = _config_map(
        "my-kafka-config",
        namespace,
        {
            "bootstrap.servers": kafka,
            "default.topic.partitions": "3",
            "default.topic.replication.factor": "1",
        },
    )
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "my-kafka-config", "namespace": namespace}
    kubectl.apply(config, _broker("configured", namespace, {BROKER_CLASS: "Kafka"}, config=ref))
    kubectl.wait_ready("broker", "configured", namespace)
    assert _partitions(kafka, naming.broker_topic(namespace, "configured")) == 3


def test_a_broker_whose_config_map_is_missing_is_not_ready_until_it_appears(
    config_stack: Stack, kubectl: Kubectl, namespace: str, kafka: str
) -> None:
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "later-config", "namespace": namespace}
    kubectl.apply(_broker("waiting", namespace, {BROKER_CLASS: "Kafka"}, config=ref))
    broker = kubectl.wait_for_condition("broker", "waiting", namespace, "Ready", "False")
    ready = next(c for c in broker["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ConfigMapNotFound"
    assert ready["message"] == f'ConfigMap "later-config" in namespace "{namespace}" does not exist'

    # Created, the ConfigMap reaches the operator through its watch (resyncs do not read it again).
    kubectl.apply(_config_map("later-config", namespace, {"default.topic.partitions": "2"}))
    kubectl.wait_ready("broker", "waiting", namespace, timeout=30)
    assert _partitions(kafka, naming.broker_topic(namespace, "waiting")) == 2


def test_a_broker_on_its_own_secured_cluster_reads_its_secret_and_follows_its_changes(
    config_stack: Stack, kubectl: Kubectl, namespace: str, sasl_ssl_kafka: SecuredKafka
) -> None:
    wrong = {**sasl_ssl_kafka.secret, "password": "not-the-password"}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kafka-auth", "namespace": namespace},
    }
    config = _config_map(
        "secured-config",
        namespace,
        {
            "bootstrap.servers": sasl_ssl_kafka.bootstrap_servers,
            "auth.secret.ref.name": "kafka-auth",
            "default.topic.partitions": "1",
            "default.topic.replication.factor": "1",
        },
    )
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "secured-config", "namespace": namespace}
    kubectl.apply(
        {**secret, "stringData": wrong},
        config,
        _broker("secured", namespace, {BROKER_CLASS: "Kafka"}, config=ref),
    )
    broker = kubectl.wait_for_condition("broker", "secured", namespace, "Ready", "False")
    ready = next(c for c in broker["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "TopicCreationFailed", ready
    assert "refused the SASL credentials" in ready["message"] and "not-the-password" not in ready["message"]

    # The operator watches the Secret (the chart's RBAC lets it): the right password makes the Broker Ready.
    kubectl.apply({**secret, "stringData": sasl_ssl_kafka.secret})
    kubectl.wait_ready("broker", "secured", namespace, timeout=60)

    async def topics() -> set[str]:
        async with admin_client(sasl_ssl_kafka.connection) as admin:
            return set(await admin.list_topics())

    assert naming.broker_topic(namespace, "secured") in asyncio.run(topics())
