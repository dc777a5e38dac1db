"""Which Kafka cluster a resource's topic is on, and with which credentials: Knative's references resolved
against the Secrets among the resources. Pure.

- A Broker's config (``kafka-broker-config``): ``bootstrap.servers`` and ``auth.secret.ref.name`` (a Secret
  in the ConfigMap's namespace with Knative's keys: ``protocol``, ``sasl.mechanism``, ``user``, ...).
- A KafkaSink: ``spec.bootstrapServers`` and ``spec.auth.secret.ref.name`` (in the sink's namespace).
- A KafkaSource: ``spec.bootstrapServers`` and ``spec.net`` (``sasl`` and ``tls``, each value a
  ``secretKeyRef`` in the source's namespace).

None means the services' own connection: no bootstrap servers of its own, or the services' own cluster
without credentials of its own (a Broker whose kafka-broker-config names the cluster keventing runs on).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from controller.resolver import Unresolvable
from keventing.kafka.connection import KafkaConnection, KafkaConnectionInvalid, connection_from_secret
from keventing.resources import ConfigMap, KafkaSink, KafkaSource, Resource, ResourceKey, Secret

BOOTSTRAP_SERVERS = "bootstrap.servers"
AUTH_SECRET = "auth.secret.ref.name"


class ConnectionUnresolvable(Unresolvable):
    """A resource's Kafka connection cannot be made from what it references; ``reason`` is the status's."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _servers(value: str | Iterable[str]) -> str:
    parts = value.split(",") if isinstance(value, str) else value
    return ",".join(s.strip() for s in parts if s and s.strip())


def _same_cluster(servers: str, own: str) -> bool:
    return set(servers.split(",")) == set(_servers(own).split(","))


def _secret(resources: Mapping[ResourceKey, Resource], namespace: str, name: str) -> dict[str, str]:
    found = resources.get(ResourceKey(Secret.KIND, namespace, name))
    if not isinstance(found, Secret):
        raise ConnectionUnresolvable(
            "SecretNotFound", f'Secret "{name}" in namespace "{namespace}" does not exist'
        )
    return found.values()


def _connection(
    servers: str, data: Mapping[str, str] | None, own_servers: str, where: str
) -> KafkaConnection | None:
    if data is None and _same_cluster(servers, own_servers):
        return None
    try:
        return connection_from_secret(servers, data or {})
    except KafkaConnectionInvalid as err:
        raise ConnectionUnresolvable("KafkaAuthInvalid", f"{where}: {err}") from None


def broker_connection(
    data: Mapping[str, str],
    config_namespace: str,
    resources: Mapping[ResourceKey, Resource],
    own_servers: str,
) -> KafkaConnection | None:
    servers = _servers(data.get(BOOTSTRAP_SERVERS, ""))
    secret_name = data.get(AUTH_SECRET, "").strip()
    if not servers:
        if secret_name:
            raise ConnectionUnresolvable(
                "ConfigInvalid", f"broker config: {AUTH_SECRET} needs {BOOTSTRAP_SERVERS} beside it"
            )
        return None
    secret = _secret(resources, config_namespace, secret_name) if secret_name else None
    return _connection(servers, secret, own_servers, f'Secret "{secret_name}"')


def kafka_sink_connection(
    sink: KafkaSink, resources: Mapping[ResourceKey, Resource], own_servers: str
) -> KafkaConnection | None:
    servers = _servers(sink.spec.bootstrapServers or "")
    ref = ((sink.spec.auth or {}).get("secret") or {}).get("ref") or {}
    secret_name = str(ref.get("name") or "").strip()
    if not servers:
        if secret_name:
            raise ConnectionUnresolvable("ConfigInvalid", "spec.auth needs spec.bootstrapServers beside it")
        return None
    secret = _secret(resources, sink.namespace, secret_name) if secret_name else None
    return _connection(servers, secret, own_servers, f'Secret "{secret_name}"')


def kafka_source_connection(
    source: KafkaSource, resources: Mapping[ResourceKey, Resource], own_servers: str
) -> KafkaConnection | None:
    servers = _servers(source.spec.bootstrapServers)
    net = source.spec.net or {}
    sasl, tls = net.get("sasl") or {}, net.get("tls") or {}
    sasl_on, tls_on = _enabled(sasl), _enabled(tls)
    if not (sasl_on or tls_on):
        return _connection(servers, None, own_servers, "spec.net")

    def value(section: Mapping[str, Any], field: str, path: str) -> str | None:
        ref = (section.get(field) or {}).get("secretKeyRef")
        if not ref:
            return None
        name, key = str(ref.get("name") or ""), str(ref.get("key") or "")
        values = _secret(resources, source.namespace, name)
        if key not in values:
            raise ConnectionUnresolvable("SecretKeyNotFound", f'{path}: Secret "{name}" has no key "{key}"')
        return values[key]

    data: dict[str, str] = {"protocol": {(True, True): "SASL_SSL", (False, True): "SASL_PLAINTEXT"}.get(
        (tls_on, sasl_on), "SSL"
    )}  # fmt: skip
    fields = [("user", sasl, "user"), ("password", sasl, "password"), ("sasl.mechanism", sasl, "type")]
    fields += [("ca.crt", tls, "caCert"), ("user.crt", tls, "cert"), ("user.key", tls, "key")]
    for key, section, field in fields:
        if (section is sasl and sasl_on) or (section is tls and tls_on):
            found = value(section, field, f"spec.net.{'sasl' if section is sasl else 'tls'}.{field}")
            if found is not None:
                data[key] = found
    try:
        return connection_from_secret(servers, data)
    except KafkaConnectionInvalid as err:
        raise ConnectionUnresolvable("KafkaAuthInvalid", f"spec.net: {err}") from None


def _enabled(section: Mapping[str, Any]) -> bool:
    flag = section.get("enable")
    return flag is True or str(flag).lower() == "true"


def referenced_secrets(resources: Iterable[Resource]) -> set[ResourceKey]:
    """The Secrets the resources' Kafka connections name (what the Kubernetes operator must read)."""
    keys = set()
    for resource in resources:
        if isinstance(resource, ConfigMap) and resource.data.get(AUTH_SECRET):
            keys.add(ResourceKey(Secret.KIND, resource.namespace, resource.data[AUTH_SECRET].strip()))
        elif isinstance(resource, KafkaSink):
            name = (((resource.spec.auth or {}).get("secret") or {}).get("ref") or {}).get("name")
            if name:
                keys.add(ResourceKey(Secret.KIND, resource.namespace, str(name)))
        elif isinstance(resource, KafkaSource):
            net = resource.spec.net or {}
            for section in (net.get("sasl") or {}, net.get("tls") or {}):
                for field in section.values():
                    ref = field.get("secretKeyRef") if isinstance(field, dict) else None
                    if ref and ref.get("name"):
                        keys.add(ResourceKey(Secret.KIND, resource.namespace, str(ref["name"])))
    return keys
