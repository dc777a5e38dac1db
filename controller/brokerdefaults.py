"""Knative's ``config-br-defaults``: what a Broker without a class annotation, ``spec.config`` or
``spec.delivery`` gets.

The ConfigMap lives in the controller's system namespace; its ``default-br-config`` key holds YAML with a
``clusterDefault`` and per-namespace ``namespaceDefaults``, each with a ``brokerClass``, the reference of a
broker config (``apiVersion``, ``kind``, ``name``, ``namespace``) and a ``delivery``. A namespace's entry wins
field by field over the cluster's. Pure: the adapters hand the ConfigMap in as a resource.
"""

from __future__ import annotations

from collections.abc import Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keventing.resources import ConfigMap, DeliverySpec, KReference, Resource, ResourceInvalid, ResourceKey
from keventing.resources.eventing import BROKER_CLASS_ANNOTATION, KAFKA_BROKER_CLASS

CONFIG_MAP = "config-br-defaults"
DATA_KEY = "default-br-config"
# Knative's Kafka broker configuration: what a Broker whose config reference names nothing else reads.
KAFKA_BROKER_CONFIG = "kafka-broker-config"


class BrokerDefaultsInvalid(ValueError):
    """config-br-defaults cannot be read; the message says what is wrong with it."""


class BrokerDefault(BaseModel):
    # Knative adds keys over releases (brokerClasses, say); what keventing does not use is ignored.
    model_config = ConfigDict(extra="ignore")

    brokerClass: str | None = None
    apiVersion: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    delivery: DeliverySpec | None = None

    @property
    def config(self) -> KReference | None:
        if not self.name:
            return None
        return KReference(
            apiVersion=self.apiVersion or "v1",
            kind=self.kind or "ConfigMap",
            name=self.name,
            namespace=self.namespace,
        )


class BrokerDefaults(BaseModel):
    model_config = ConfigDict(extra="ignore")

    clusterDefault: BrokerDefault = Field(default_factory=BrokerDefault)
    namespaceDefaults: dict[str, BrokerDefault] = Field(default_factory=dict)

    def _field(self, namespace: str, name: str) -> object:
        own = self.namespaceDefaults.get(namespace)
        value = getattr(own, name) if own is not None else None
        return value if value is not None else getattr(self.clusterDefault, name)

    def broker_class(self, namespace: str) -> str | None:
        value = self._field(namespace, "brokerClass")
        return value if isinstance(value, str) else None

    def config(self, namespace: str) -> KReference | None:
        own = self.namespaceDefaults.get(namespace)
        if own is not None and own.config is not None:
            return own.config
        return self.clusterDefault.config

    def delivery(self, namespace: str) -> DeliverySpec | None:
        value = self._field(namespace, "delivery")
        return value if isinstance(value, DeliverySpec) else None


def defaults_key(system_namespace: str) -> ResourceKey:
    return ResourceKey(ConfigMap.KIND, system_namespace, CONFIG_MAP)


def parse_defaults(data: Mapping[str, str]) -> BrokerDefaults:
    """The defaults a config-br-defaults ConfigMap's data holds; an absent key means no defaults."""
    text = data.get(DATA_KEY)
    if not text:
        return BrokerDefaults()
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise BrokerDefaultsInvalid(f"{CONFIG_MAP}: {DATA_KEY} is not YAML: {err}") from None
    if document is None:
        return BrokerDefaults()
    if not isinstance(document, dict):
        raise BrokerDefaultsInvalid(f"{CONFIG_MAP}: {DATA_KEY} must be a mapping")
    try:
        defaults = BrokerDefaults.model_validate(document)
    except ValidationError as err:
        first = err.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise BrokerDefaultsInvalid(f"{CONFIG_MAP}: {DATA_KEY}.{path}: {first['msg']}") from None
    entries = {"clusterDefault": defaults.clusterDefault} | {
        f"namespaceDefaults.{ns}": entry for ns, entry in defaults.namespaceDefaults.items()
    }
    for path, entry in entries.items():
        if entry.delivery is None:
            continue
        try:
            entry.delivery.validate_at(f"{path}.delivery")
        except ResourceInvalid as err:
            raise BrokerDefaultsInvalid(f"{CONFIG_MAP}: {DATA_KEY}.{err}") from None
    return defaults


def defaults_in(resources: Mapping[ResourceKey, Resource], system_namespace: str) -> BrokerDefaults:
    """The defaults config-br-defaults in ``system_namespace`` holds (none when it does not exist)."""
    found = resources.get(defaults_key(system_namespace))
    if not isinstance(found, ConfigMap):
        return BrokerDefaults()
    return parse_defaults(found.data)


def broker_class(annotations: Mapping[str, str], namespace: str, defaults: BrokerDefaults) -> str:
    """A Broker's class: its annotation, else its namespace's or the cluster's default, else Kafka."""
    return annotations.get(BROKER_CLASS_ANNOTATION) or defaults.broker_class(namespace) or KAFKA_BROKER_CLASS
