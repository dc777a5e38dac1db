"""Where an event went: the contract's egresses on its topic, which of them select it, whether each one's
consumer group has committed past it, and whether it reached a dead-letter sink that is itself on Kafka.

The contract is what the dispatcher runs (the topics, consumer groups, filters and dead-letter URLs it was
given), so a trace reads that rather than re-deriving it from the resources. :func:`hops` is pure; the rest
reads Kafka. Used by ``kev trace`` and by the console (lag and rate per edge).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlparse

from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    NotCoordinatorError,
)

from keventing.contract import ContractEntry, Egress, Ingress
from keventing.filters import FilterError, compile_trigger_filter
from keventing.kafka.client import admin_client
from keventing.kafka.compacted import CompactedTopic
from keventing.kafka.connection import Connectable, KafkaConnection
from keventing.settings import CommonSettings

Offsets = Mapping[tuple[str, int], int]
HopState = Literal["filtered", "pending", "done", "dead-lettered", "not-positioned", "invalid-filter"]


async def load_contract(settings: CommonSettings) -> dict[str, ContractEntry]:
    """The contract as the controller last published it, by entry id (``Trigger/ns/name``)."""
    table = await CompactedTopic(
        settings.kafka_connection, settings.contract_topic, settings.control_plane_replication_factor
    ).snapshot()
    out: dict[str, ContractEntry] = {}
    for key, value in table.items():
        try:
            out[key] = ContractEntry.decode(value)
        except ValueError:
            continue  # written by a newer controller: not ours to show
    return out


def ingress_of(contract: Mapping[str, ContractEntry], entry_id: str) -> Ingress | None:
    entry = contract.get(entry_id)
    return entry.ingress if entry is not None else None


def egresses_on(contract: Mapping[str, ContractEntry], topic: str) -> list[Egress]:
    """Every egress that reads ``topic`` (a Broker's Triggers, a Channel's Subscriptions), by id."""
    found = [e.egress for e in contract.values() if e.egress is not None and topic in e.egress.topics]
    return sorted(found, key=lambda e: e.id)


def dead_letter_ingress(contract: Mapping[str, ContractEntry], url: str | None) -> Ingress | None:
    """The ingress a dead-letter URL posts to, when the sink is keventing's own (a Broker, a KafkaSink, a
    Channel): its path is the URL's. None for any other sink (its events are not on Kafka to look at)."""
    if not url:
        return None
    path = urlparse(url).path.rstrip("/")
    for entry in contract.values():
        ingress = entry.ingress
        if ingress is not None and ingress.topic and ingress.path.rstrip("/") == path:
            return ingress
    return None


def connection_of(settings: CommonSettings, own: KafkaConnection | None) -> Connectable:
    """The cluster an entry's topic is on: its own connection, or the services' cluster."""
    return own if own is not None else settings.kafka_connection


async def committed_offsets(
    connection: Connectable, groups: list[str]
) -> dict[str, dict[tuple[str, int], int]]:
    """Each group's committed offset per (topic, partition); a group without any is left empty."""
    out: dict[str, dict[tuple[str, int], int]] = {}
    async with admin_client(connection) as admin:
        for group in groups:
            try:
                offsets = await admin.list_consumer_group_offsets(group)
            except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError, NotCoordinatorError):
                offsets = {}
            out[group] = {
                (tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0
            }
    return out


@dataclass(frozen=True)
class Hop:
    """One egress's part in an event's path."""

    egress: Egress
    matches: bool | None
    committed: int | None
    state: HopState
    dead_letter_topic: str | None = None

    @property
    def explanation(self) -> str:
        return {
            "filtered": "its filter does not select the event",
            "pending": "not delivered yet: the group has not committed past the record",
            "done": "the group committed past the record (delivered, or given up on)",
            "dead-lettered": "delivery failed; the event is on the dead-letter sink's topic",
            "not-positioned": "the group has no committed offset on this partition yet",
            "invalid-filter": "its filter does not compile",
        }[self.state]


def hops(
    egresses: list[Egress],
    attributes: Mapping[str, str],
    topic: str,
    partition: int,
    offset: int,
    committed: Mapping[str, Offsets],
    dead_lettered: Mapping[str, bool] | None = None,
    dead_letter_topics: Mapping[str, str] | None = None,
) -> list[Hop]:
    """What each egress did with the record at ``topic``/``partition``/``offset``.

    ``committed`` is each consumer group's committed offsets; ``dead_lettered[egress.id]`` says whether the
    event was found on that egress's dead-letter topic. A committed offset past the record means the
    dispatcher is done with it; a record a filter does not select is done with too, and says so.
    """
    out = []
    for egress in egresses:
        dlt = (dead_letter_topics or {}).get(egress.id)
        try:
            selects = compile_trigger_filter(egress.filter.attributes, egress.filter.filters)
        except FilterError:
            out.append(Hop(egress, None, None, "invalid-filter", dlt))
            continue
        matches = selects(attributes)
        position = committed.get(egress.consumer_group, {}).get((topic, partition))
        state: HopState
        if not matches:
            state = "filtered"
        elif (dead_lettered or {}).get(egress.id):
            state = "dead-lettered"
        elif position is None:
            state = "not-positioned"
        elif position > offset:
            state = "done"
        else:
            state = "pending"
        out.append(Hop(egress, matches, position, state, dlt))
    return out


def lag(committed: Offsets, ends: Offsets, topics: tuple[str, ...]) -> int | None:
    """Records not yet committed by a group over every partition of ``topics``; None before it commits."""
    total = 0
    seen = False
    for (topic, partition), end in ends.items():
        if topic not in topics:
            continue
        position = committed.get((topic, partition))
        if position is None:
            continue
        seen = True
        total += max(end - position, 0)
    return total if seen else None


def failed_destination(attributes: Mapping[str, str]) -> str | None:
    """The subscriber a dead-lettered event failed at (the dispatcher's ``knativeerrordest``)."""
    return attributes.get("knativeerrordest")
