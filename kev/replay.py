"""``kev replay``: move a Trigger's consumer group to another position of its Broker's topic.

Kafka alters a group's committed offsets only while the group has no members, so the Trigger is paused
first (``keventing.knative.dev/paused``: the controller publishes its egress paused, every dispatcher leaves
the group), the group is waited for until it is empty, the offsets are committed from outside the group, and
the Trigger is resumed and waited for until it is Ready again. Everything Kafka-side happens on the cluster
the Trigger's egress reads (its Broker's own, with its credentials, when it has one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from kev.client import ResourceClient
from kev.eventpath import connection_of, load_contract
from kev.tail import partitions_of
from keventing.contract import Egress
from keventing.kafka.client import admin_client, commit_group_offsets, make_consumer
from keventing.kafka.connection import Connectable
from keventing.resources import Resource, ResourceKey, Trigger
from keventing.resources.eventing import PAUSED_ANNOTATION
from keventing.settings import CommonSettings

Say = Callable[[str], None]


class ReplayError(Exception):
    """The replay cannot be made (no such Trigger, a timeout, Kafka refused); the message says what."""


@dataclass(frozen=True)
class Position:
    """Where to move the group: ``offset`` on every partition, the first record at or after ``timestamp_ms``,
    or the ``earliest`` or ``latest`` end of each partition."""

    kind: Literal["offset", "time", "earliest", "latest"]
    offset: int = 0
    timestamp_ms: int = 0

    def describe(self) -> str:
        if self.kind == "offset":
            return f"offset {self.offset}"
        if self.kind == "time":
            when = datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")
            return f"the first record written at or after {when}"
        return f"the {self.kind} offset"


@dataclass(frozen=True)
class Moved:
    """One partition's committed offset before (None: none) and after the replay."""

    partition: TopicPartition
    before: int | None
    after: int


def targets(
    position: Position,
    beginnings: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
    at_time: Mapping[TopicPartition, int | None],
) -> dict[TopicPartition, int]:
    """Each partition's new committed offset, kept within the records the partition still holds (an offset
    past them would be reset by the consumer as it pleases). ``at_time`` is Kafka's offsets_for_times answer
    (None: no record that late: the end)."""
    out = {}
    for tp, end in ends.items():
        start = beginnings.get(tp, 0)
        if position.kind == "earliest":
            wanted = start
        elif position.kind == "latest":
            wanted = end
        elif position.kind == "time":
            found = at_time.get(tp)
            wanted = end if found is None else found
        else:
            wanted = position.offset
        out[tp] = min(max(wanted, start), end)
    return out


async def egress_of(settings: CommonSettings, namespace: str, name: str) -> Egress:
    """The Trigger's egress as the dispatcher runs it (its topics, group and cluster)."""
    entry = (await load_contract(settings)).get(str(ResourceKey(Trigger.KIND, namespace, name)))
    if entry is None or entry.egress is None:
        raise ReplayError(
            f'Trigger "{name}" in namespace "{namespace}" has no egress in the contract '
            "(is it Ready, and is `kev controller` running?)"
        )
    return entry.egress


async def group_members(connection: Connectable, group: str) -> int:
    """How many members ``group`` has (a group Kafka does not know has none)."""
    async with admin_client(connection) as admin:
        [response] = await admin.describe_consumer_groups([group])
    for described in response.groups:
        error_code, group_id, _state, _protocol_type, _protocol, members = described[:6]
        if group_id == group and not error_code:
            return len(members)
    return 0


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    error: KafkaError | None = None
    while True:
        try:
            if await check():
                return
        except KafkaError as err:  # a coordinator being elected, say: asked again, and said if it lasts
            error = err
        if time.monotonic() >= deadline:
            why = f" (Kafka: {error})" if error is not None else ""
            raise ReplayError(f"timed out after {timeout:.0f} s waiting for {what}{why}")
        await asyncio.sleep(0.25)


async def move_group(
    connection: Connectable, group: str, topics: tuple[str, ...], position: Position, partitions: set[int]
) -> list[Moved]:
    """Commit the offsets ``position`` names for ``group`` on ``topics`` (only ``partitions``, when given)."""
    consumer = make_consumer(connection, None)
    await consumer.start()
    try:
        found = await partitions_of(consumer, list(topics))
        if partitions:
            unknown = partitions - {tp.partition for tp in found}
            if unknown:
                raise ReplayError(
                    f"no partition {', '.join(map(str, sorted(unknown)))} on {', '.join(topics)}"
                )
            found = [tp for tp in found if tp.partition in partitions]
        if not found:
            raise ReplayError(f"{', '.join(topics)} has no partitions to replay")
        beginnings = await consumer.beginning_offsets(found)
        ends = await consumer.end_offsets(found)
        at_time: dict[TopicPartition, int | None] = {}
        if position.kind == "time":
            answers = await consumer.offsets_for_times({tp: position.timestamp_ms for tp in found})
            at_time = {tp: (a.offset if a is not None else None) for tp, a in answers.items()}
    finally:
        await consumer.stop()
    wanted = targets(position, beginnings, ends, at_time)
    async with admin_client(connection) as admin:
        before = await admin.list_consumer_group_offsets(group)
        await commit_group_offsets(admin, group, wanted)
    moved = []
    for tp, offset in sorted(wanted.items()):
        old = before.get(tp)
        moved.append(Moved(tp, old.offset if old is not None and old.offset >= 0 else None, offset))
    return moved


async def _trigger(client: ResourceClient, key: ResourceKey) -> Resource:
    found = await client.get(key)
    if found is None:
        raise ReplayError(f'Trigger "{key.name}" not found in namespace "{key.namespace}"')
    return found


def _ready_reason(resource: Resource) -> tuple[str, str | None]:
    ready = resource.status.condition("Ready")
    return (ready.status, ready.reason) if ready is not None else ("Unknown", None)


async def replay(
    client: ResourceClient,
    settings: CommonSettings,
    key: ResourceKey,
    position: Position,
    partitions: set[int],
    timeout: float,
    say: Say,
) -> list[Moved]:
    """Pause the Trigger, wait for its group to empty, move it, resume the Trigger and wait for it Ready."""
    trigger = await _trigger(client, key)
    egress = await egress_of(settings, key.namespace, key.name)
    connection = connection_of(settings, egress.connection)
    was_paused = trigger.metadata.annotations.get(PAUSED_ANNOTATION) == "true"

    async def paused() -> bool:
        return _ready_reason(await _trigger(client, key)) == ("False", "Paused")

    async def empty() -> bool:
        return await group_members(connection, egress.consumer_group) == 0

    if not was_paused:
        await client.annotate(key, {PAUSED_ANNOTATION: "true"})
        say(f"paused Trigger {key.namespace}/{key.name}")
    try:
        await wait_until(
            paused, timeout, "the controller to pause the Trigger (is `kev controller` running?)"
        )
        await wait_until(empty, timeout, f"consumer group {egress.consumer_group} to have no members")
        say(f"consumer group {egress.consumer_group} has no members; moving it to {position.describe()}")
        moved = await move_group(connection, egress.consumer_group, egress.topics, position, partitions)
    finally:
        if not was_paused:
            await client.annotate(key, {PAUSED_ANNOTATION: None})
    if was_paused:
        say(f"Trigger {key.namespace}/{key.name} was paused before: left paused")
        return moved

    async def ready() -> bool:
        resumed = await _trigger(client, key)
        generation = resumed.status.observedGeneration
        current = generation is None or generation == resumed.metadata.generation
        return current and _ready_reason(resumed)[0] == "True"

    await wait_until(ready, timeout, f"Trigger {key.namespace}/{key.name} to be Ready again")
    say(f"resumed Trigger {key.namespace}/{key.name}: Ready")
    return moved
