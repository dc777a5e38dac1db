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
from keventing.resources.eventing import Broker, ConfigMap, Secret, Trigger
from keventing.resources.eventtype import EventType
from keventing.resources.flows import Parallel, Sequence
from keventing.resources.integrations import IntegrationSink, IntegrationSource
from keventing.resources.jobsinks import JobSink
from keventing.resources.kafka import KafkaSink
from keventing.resources.messaging import Channel, InMemoryChannel, KafkaChannel, Subscription
from keventing.resources.registry import KINDS, UnknownKind, kind_for, parse_resource
from keventing.resources.sources import ApiServerSource, ContainerSource, KafkaSource, PingSource, SinkBinding
from keventing.resources.transforms import EventTransform

__all__ = [
    "KINDS",
    "ApiServerSource",
    "Broker",
    "Channel",
    "Condition",
    "ConfigMap",
    "ContainerSource",
    "DeliverySpec",
    "Destination",
    "EventTransform",
    "EventType",
    "InMemoryChannel",
    "IntegrationSink",
    "IntegrationSource",
    "JobSink",
    "KReference",
    "KafkaChannel",
    "KafkaSink",
    "KafkaSource",
    "ObjectMeta",
    "Parallel",
    "PingSource",
    "Resource",
    "ResourceInvalid",
    "ResourceKey",
    "Secret",
    "Sequence",
    "SinkBinding",
    "Status",
    "Subscription",
    "Trigger",
    "UnknownKind",
    "kind_for",
    "parse_resource",
]
