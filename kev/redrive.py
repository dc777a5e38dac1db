"""``kev redrive``: send the events a Trigger dead-lettered to a Kafka topic back to that Trigger alone.

The dead-letter topic is the Trigger's dead-letter sink's when that sink is keventing's own on Kafka (a
KafkaSink), or the one named. Each event the Trigger dead-lettered (its ``knativeerrordest`` is the
Trigger's subscriber) loses Knative's dead-letter extensions and is produced to the Broker's topic with the
``keventing_target`` header first: the dispatcher delivers it to that Trigger and every other Trigger of the
Broker passes it over, so nobody else sees it twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from kev.eventpath import connection_of, dead_letter_ingress, failed_destination, load_contract
from kev.tail import TailedEvent, since
from keventing import events
from keventing.contract import ContractEntry, Egress
from keventing.kafka.client import make_producer
from keventing.kafka.connection import Connectable
from keventing.resources import ResourceKey
from keventing.settings import CommonSettings

# What the dispatcher adds when it dead-letters an event (Knative's names).
DEAD_LETTER_EXTENSIONS = ("knativeerrordest", "knativeerrorcode", "knativeerrordata")


class RedriveError(Exception):
    """Nothing can be redriven (no such Trigger, no dead-letter topic, Kafka refused); the message says why."""


@dataclass(frozen=True)
class Plan:
    """Where the dead letters are read and where they go."""

    egress: Egress
    dead_letter_topic: str
    dead_letter_connection: Connectable
    broker_topic: str
    broker_connection: Connectable


def plan(
    contract: dict[str, ContractEntry], settings: CommonSettings, key: ResourceKey, topic: str | None
) -> Plan:
    """Resolve the Trigger's egress, its Broker's topic and the dead-letter topic (``topic``, else its sink's)."""
    entry = contract.get(str(key))
    if entry is None or entry.egress is None:
        raise RedriveError(
            f'Trigger "{key.name}" in namespace "{key.namespace}" has no egress in the contract '
            "(does it exist, is it Ready, and is `kev controller` running?)"
        )
    egress = entry.egress
    if topic is None:
        sink = dead_letter_ingress(contract, egress.delivery.dead_letter_url)
        if sink is None:
            raise RedriveError(
                f'Trigger "{key.name}" has no dead-letter sink on Kafka (a KafkaSink): name its topic with --topic'
            )
        topic, own = sink.topic, sink.connection
    else:
        # A topic keventing serves (a KafkaSink's on a cluster of its own, say) is read where it is.
        own = next(
            (
                e.ingress.connection
                for e in contract.values()
                if e.ingress is not None and e.ingress.topic == topic
            ),
            None,
        )
    return Plan(
        egress,
        topic,
        connection_of(settings, own),
        egress.topics[0],
        connection_of(settings, egress.connection),
    )


def dead_letters(found: list[TailedEvent], egress: Egress, every: bool) -> list[TailedEvent]:
    """The events ``egress`` dead-lettered (those that failed at its subscriber; with ``every``, all)."""
    if every:
        return found
    return [e for e in found if failed_destination(e.attributes) in (None, egress.destination)]


def redriven(letter: TailedEvent) -> events.Event:
    """The event as it was before it was dead-lettered."""
    attributes = {k: v for k, v in letter.attributes.items() if k not in DEAD_LETTER_EXTENSIONS}
    return events.Event(attributes, letter.data)


async def read(
    settings: CommonSettings, key: ResourceKey, topic: str | None, from_ms: int | None, every: bool
) -> tuple[Plan, list[TailedEvent]]:
    """The plan and the dead letters to redrive, read up to the dead-letter topic's current end."""
    found = plan(await load_contract(settings), settings, key, topic)
    letters = await since(found.dead_letter_connection, found.dead_letter_topic, from_ms)
    return found, dead_letters(letters, found.egress, every)


async def send(found: Plan, letters: list[TailedEvent]) -> int:
    """Produce each letter to the Broker's topic for the Trigger alone; how many Kafka acknowledged."""
    target = (events.TARGET_HEADER, found.egress.id.encode())
    producer = make_producer(found.broker_connection)
    await producer.start()
    try:
        sent = []
        for letter in letters:
            key, headers, value = events.to_kafka_binary(redriven(letter))
            sent.append(
                await producer.send(found.broker_topic, value=value, key=key, headers=[target, *headers])
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return len(letters)
