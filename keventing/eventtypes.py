"""EventType auto-creation: each (type, source) pair first seen at a Broker's ingress, or in a reply published
to it, becomes an EventType in the resource store.

The request path pays one set lookup (:meth:`EventTypeRegistry.observe`); a new pair is queued and written
later by :meth:`EventTypeRegistry.run`, off the request path. Names are Knative's deterministic
``et-<broker>-<md5(type source namespace broker)>``, so several receiver replicas (or dispatcher replicas
publishing replies) write the same EventType, never two.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson
from prometheus_client import CollectorRegistry, Counter

from keventing import events
from keventing.contract import ContractEntry, Ingress
from keventing.kafka.compacted import CompactedTopic
from keventing.kafka.connection import Connectable
from keventing.metrics import MetricSet
from keventing.resources import KINDS, EventType, KReference, ResourceKey, parse_resource
from keventing.resources.base import ObjectMeta, OwnerReference, now_rfc3339
from keventing.resources.eventtype import V1BETA3, EventTypeSpec

log = logging.getLogger("keventing.eventtypes")

AUTO_CREATED_DESCRIPTION = "Event Type auto-created by controller"
_NOT_DNS1123 = re.compile(r"[^a-z0-9.-]")


@dataclass(frozen=True)
class Sighting:
    """A (type, source) pair seen at an addressable (a Broker), with the schema the event named."""

    ingress_id: str
    kind: str
    namespace: str
    name: str
    type: str
    source: str
    schema: str | None = None


def event_type_name(addressable: str, namespace: str, event_type: str, source: str) -> str:
    """Knative's generated name: ``et-<addressable>-<md5 hex of type, source, namespace, addressable>``."""
    digest = hashlib.md5(
        (event_type + source + namespace + addressable).encode(), usedforsecurity=False
    ).hexdigest()
    return _dns1123_subdomain(f"et-{addressable}-{digest}")


def _dns1123_subdomain(name: str) -> str:
    return _NOT_DNS1123.sub("", name.lower())[:253].strip("-.")


def auto_event_type(sighting: Sighting) -> EventType:
    """The EventType Knative would create for ``sighting``, owned by (and referring to) its addressable."""
    cls = KINDS.get(sighting.kind)
    api_version = cls.API_VERSIONS[0] if cls else "eventing.knative.dev/v1"
    name = event_type_name(sighting.name, sighting.namespace, sighting.type, sighting.source)
    key = ResourceKey("EventType", sighting.namespace, name)
    return EventType(
        apiVersion=V1BETA3,
        kind="EventType",
        metadata=ObjectMeta(
            name=name,
            namespace=sighting.namespace,
            # Deterministic, so that two writers of the same EventType write the same record.
            uid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"keventing:{key}")),
            creationTimestamp=now_rfc3339(),
            ownerReferences=[OwnerReference(apiVersion=api_version, kind=sighting.kind, name=sighting.name)],
        ),
        spec=EventTypeSpec(
            type=sighting.type,
            source=sighting.source or None,
            schema=sighting.schema,
            reference=KReference(
                apiVersion=api_version, kind=sighting.kind, namespace=sighting.namespace, name=sighting.name
            ),
            description=AUTO_CREATED_DESCRIPTION,
        ),
    )


def _identity(event_type: EventType) -> tuple[str, str, str, str, str] | None:
    reference = event_type.reference
    if reference is None or event_type.spec.type is None:
        return None
    namespace = reference.namespace or event_type.namespace
    return (reference.kind, namespace, reference.name, event_type.spec.type, event_type.spec.source or "")


def missing_event_types(
    sightings: Iterable[Sighting], stored: Mapping[str, bytes], per_addressable: int | None = None
) -> list[EventType]:
    """The EventTypes :func:`plan_event_types` would create."""
    return plan_event_types(sightings, stored, per_addressable)[0]


def plan_event_types(
    sightings: Iterable[Sighting], stored: Mapping[str, bytes], per_addressable: int | None = None
) -> tuple[list[EventType], list[Sighting]]:
    """The EventTypes to create: one per new sighting, unless the store has it already — under its
    generated name, or as any EventType (applied by hand, say) with the same reference, type and source —
    and unless its addressable has ``per_addressable`` EventTypes already (those sightings are refused)."""
    known: set[tuple[str, str, str, str, str]] = set()
    counts: dict[tuple[str, str, str], int] = {}
    for key, value in stored.items():
        if not key.startswith("EventType/"):
            continue
        try:
            existing = parse_resource(orjson.loads(value), semantics=False)
        except ValueError:
            continue
        if isinstance(existing, EventType) and (identity := _identity(existing)) is not None:
            known.add(identity)
            counts[identity[:3]] = counts.get(identity[:3], 0) + 1
    wanted: list[EventType] = []
    refused: list[Sighting] = []
    for sighting in sightings:
        candidate = auto_event_type(sighting)
        identity = _identity(candidate)
        if str(candidate.key) in stored or identity in known:
            continue
        assert identity is not None
        addressable = identity[:3]
        if per_addressable is not None and counts.get(addressable, 0) >= per_addressable:
            refused.append(sighting)
            continue
        counts[addressable] = counts.get(addressable, 0) + 1
        known.add(identity)
        wanted.append(candidate)
    return wanted, refused


@dataclass(frozen=True)
class EventTypeLimits:
    """How much auto-creation may do: EventTypes per addressable and in all, and creations per second.
    Beyond them a pair is not recorded (``keventing_eventtypes_skipped_total{reason="limit"}`` counts the
    events); a client sending endless distinct types cannot grow the store, or the registry, without bound."""

    per_addressable: int = 1000
    total: int = 10000
    per_second: float = 50.0


class EventTypeMetrics(MetricSet):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.created = Counter(
            "keventing_eventtypes_created_total", "EventTypes auto-created", registry=registry
        )
        self.skipped = Counter(
            "keventing_eventtypes_skipped_total",
            "Events whose (type, source) pair was not recorded as an EventType, by reason",
            ["reason"],
            registry=registry,
        )
        self.limited = self.skipped.labels("limit")


class EventTypeRegistry:
    """Remembers the pairs seen per addressable and writes an EventType for each new one, within limits.

    ``observe`` and ``observe_reply`` are all the hot path calls; ``run`` is the writer task.
    """

    def __init__(
        self,
        connection: Connectable,
        resources_topic: str,
        limits: EventTypeLimits | None = None,
        metrics: EventTypeMetrics | None = None,
    ) -> None:
        self.resources = CompactedTopic(connection, resources_topic)
        self.limits = limits or EventTypeLimits()
        self.metrics = metrics or EventTypeMetrics.of()
        self.seen: set[tuple[str, str, str]] = set()
        self.per_addressable: dict[str, int] = {}
        self.queue: asyncio.Queue[Sighting] = asyncio.Queue()
        # Ingresses that record EventTypes, by topic: a reply published to that topic counts as seen there.
        self.by_topic: dict[str, Ingress] = {}
        self._topic_of: dict[str, str] = {}

    def observe(self, ingress: Ingress, event: events.Event) -> None:
        if not ingress.event_types:
            return
        attributes = event.attributes
        key = (ingress.id, attributes["type"], attributes["source"])
        if key in self.seen:
            return
        count = self.per_addressable.get(ingress.id, 0)
        if count >= self.limits.per_addressable or len(self.seen) >= self.limits.total:
            self.metrics.limited.inc()
            return
        self.seen.add(key)
        self.per_addressable[ingress.id] = count + 1
        self.queue.put_nowait(
            Sighting(
                ingress.id,
                ingress.kind,
                ingress.namespace,
                ingress.name,
                attributes["type"],
                attributes["source"],
                attributes.get("dataschema"),
            )
        )

    def observe_reply(self, topic: str, event: events.Event) -> None:
        """A reply published straight to ``topic`` (no ingress on the way) is seen by the topic's ingress."""
        ingress = self.by_topic.get(topic)
        if ingress is not None:
            self.observe(ingress, event)

    def track(self, key: str, entry: ContractEntry | None) -> None:
        """Follow the contract's ingresses, so that ``observe_reply`` knows which addressable owns a topic."""
        old_topic = self._topic_of.pop(key, None)
        if old_topic is not None:
            self.by_topic.pop(old_topic, None)
        if entry is not None and entry.ingress is not None and entry.ingress.event_types:
            self.by_topic[entry.ingress.topic] = entry.ingress
            self._topic_of[key] = entry.ingress.topic

    async def run(self) -> None:
        try:
            while True:
                batch = [await self.queue.get()]
                while not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                try:
                    await self._write(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    # Forget them, so that the next sighting of each pair tries again.
                    for sighting in batch:
                        self._forget(sighting)
                    log.warning("could not record EventTypes; will retry", extra={"error": repr(err)})
                    await asyncio.sleep(1)
        finally:
            await self.resources.stop()

    def _forget(self, sighting: Sighting) -> None:
        key = (sighting.ingress_id, sighting.type, sighting.source)
        if key in self.seen:
            self.seen.discard(key)
            self.per_addressable[sighting.ingress_id] -= 1

    async def _write(self, batch: list[Sighting]) -> None:
        stored = await self.resources.snapshot()
        wanted, refused = plan_event_types(batch, stored, self.limits.per_addressable)
        if refused:  # other writers filled the store up to the limit already
            self.metrics.limited.inc(len(refused))
        for event_type in wanted:
            document = event_type.to_document(with_status=False)
            await self.resources.put(str(event_type.key), orjson.dumps(document))
            self.metrics.created.inc()
            log.info(
                "EventType created",
                extra={"eventtype": str(event_type.key), "type": event_type.spec.type},
            )
            await asyncio.sleep(1 / self.limits.per_second)  # the creation rate limit
