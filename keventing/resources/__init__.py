"""Typed models of Knative's resources, read from Knative's own YAML unchanged.

``parse_resource`` turns one YAML document into its model and validates it; errors name the bad field.
"""

from keventing.resources.base import (
    Condition,
    Destination,
    KReference,
    ObjectMeta,
    Resource,
    ResourceInvalid,
    ResourceKey,
    Status,
)
from keventing.resources.delivery import DeliverySpec
from keventing.resources.eventing import Broker, ConfigMap, Trigger
from keventing.resources.registry import KINDS, UnknownKind, kind_for, parse_resource

__all__ = [
    "KINDS",
    "Broker",
    "Condition",
    "ConfigMap",
    "DeliverySpec",
    "Destination",
    "KReference",
    "ObjectMeta",
    "Resource",
    "ResourceInvalid",
    "ResourceKey",
    "Status",
    "Trigger",
    "UnknownKind",
    "kind_for",
    "parse_resource",
]
