"""Which cluster a Broker's, KafkaSink's and KafkaSource's topic is on, from Knative's references (pure)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from helpers import kafka_sink_doc, kafka_source_doc

from controller.connections import (
    ConnectionUnresolvable,
    broker_connection,
    kafka_sink_connection,
    kafka_source_connection,
    referenced_secrets,
)
from keventing.resources import KafkaSink, KafkaSource, Resource, ResourceKey, Secret, parse_resource

OWN = "kafka-0:9092,kafka-1:9092"


def _secret(name: str, namespace: str = "ns", **values: str) -> Secret:
    data = {k.replace("_", "."): base64.b64encode(v.encode()).decode() for k, v in values.items()}
    resource = parse_resource(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        }
    )
    assert isinstance(resource, Secret)
    return resource


def _by_key(*resources: Resource) -> dict[ResourceKey, Resource]:
    return {r.key: r for r in resources}


def test_a_broker_config_with_bootstrap_servers_and_a_secret_is_that_cluster() -> None:
    secret = _secret("creds", "knative-eventing", protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                     user="u", password="p")  # fmt: skip
    data = {"bootstrap.servers": "other:9093", "auth.secret.ref.name": "creds"}
    conn = broker_connection(data, "knative-eventing", _by_key(secret), OWN)
    assert conn is not None
    assert (conn.bootstrap_servers, conn.security_protocol, conn.sasl_mechanism) == (
        "other:9093",
        "SASL_SSL",
        "SCRAM-SHA-512",
    )


def test_a_broker_config_naming_the_services_cluster_without_a_secret_uses_the_services_connection() -> None:
    assert broker_connection({"bootstrap.servers": "kafka-1:9092, kafka-0:9092"}, "ns", {}, OWN) is None
    assert broker_connection({}, "ns", {}, OWN) is None


def test_a_missing_secret_or_a_secret_without_servers_is_a_reason() -> None:
    with pytest.raises(ConnectionUnresolvable) as missing:
        broker_connection({"bootstrap.servers": "o:1", "auth.secret.ref.name": "gone"}, "ns", {}, OWN)
    assert missing.value.reason == "SecretNotFound"
    assert str(missing.value) == 'Secret "gone" in namespace "ns" does not exist'
    with pytest.raises(ConnectionUnresolvable) as lonely:
        broker_connection({"auth.secret.ref.name": "creds"}, "ns", {}, OWN)
    assert lonely.value.reason == "ConfigInvalid"


def test_a_kafka_sink_uses_its_bootstrap_servers_and_auth_secret() -> None:
    sink = parse_resource(
        kafka_sink_doc("s", "ns", "t", bootstrapServers=["o:1"], auth={"secret": {"ref": {"name": "creds"}}})
    )
    assert isinstance(sink, KafkaSink)
    conn = kafka_sink_connection(sink, _by_key(_secret("creds", user="u", password="p")), OWN)
    assert conn is not None and (conn.security_protocol, conn.user) == ("SASL_PLAINTEXT", "u")
    plain = parse_resource(kafka_sink_doc("s", "ns", "t"))
    assert isinstance(plain, KafkaSink) and kafka_sink_connection(plain, {}, OWN) is None


def _source(net: dict[str, Any]) -> KafkaSource:
    source = parse_resource(kafka_source_doc("k", "ns", "o:1", ["t"], {"uri": "http://sink"}, net=net))
    assert isinstance(source, KafkaSource)
    return source


def _ref(key: str, name: str = "creds") -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": key}}


def test_a_kafka_source_net_reads_its_secret_key_refs() -> None:
    secret = _secret("creds", user="u", password="p", mechanism="SCRAM-SHA-256")
    net = {"sasl": {"enable": True, "user": _ref("user"), "password": _ref("password"), "type": _ref("mechanism")},
           "tls": {"enable": False}}  # fmt: skip
    conn = kafka_source_connection(_source(net), _by_key(secret), OWN)
    assert conn is not None
    assert (conn.security_protocol, conn.sasl_mechanism, conn.user, conn.password) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-256",
        "u",
        "p",
    )
    assert referenced_secrets([_source(net)]) == {ResourceKey("Secret", "ns", "creds")}


def test_a_kafka_source_net_naming_a_missing_key_says_which() -> None:
    net = {"sasl": {"enable": True, "user": _ref("nope"), "password": _ref("password")}}
    with pytest.raises(ConnectionUnresolvable, match='spec.net.sasl.user: Secret "creds" has no key "nope"'):
        kafka_source_connection(_source(net), _by_key(_secret("creds", password="p")), OWN)


def test_a_secret_is_shown_without_its_values() -> None:
    secret = _secret("creds", user="u", password="hunter2")
    shown = str(secret.display_document())
    assert "hunter2" not in shown and base64.b64encode(b"hunter2").decode() not in shown
    assert secret.display_document()["data"] == {
        "password": "<redacted: 7 bytes>",
        "user": "<redacted: 1 bytes>",
    }
