"""Which share of the work this process does: membership in its replicas' consumer group on an assignment topic.

Every piece of work (a source for the sources runners, a KafkaSource's consumer for the dispatchers) hashes to
one partition of an assignment topic (``<instance>.source-assignments``, ``<instance>.dispatcher-assignments``);
Kafka's group protocol gives each partition to exactly one live replica. The topic carries no records: the
group is only used to agree on who owns what. ``on_change(final)`` is awaited inside the rebalance: with
``final=False`` when partitions are revoked (the group protocol revokes them all, even those that will come
back), with ``final=True`` once the new assignment is known or the membership is lost.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Awaitable, Callable

from aiokafka import TopicPartition

from keventing.kafka.client import TopicSpec, admin_client, ensure_topic, make_consumer, stop_within
from keventing.kafka.connection import Connectable
from keventing.kafka.rebalance import RebalanceListener
from keventing.restarting import restarting

log = logging.getLogger("keventing.ownership")

OnChange = Callable[[bool], Awaitable[None]]


def partition_for(work_id: str, partitions: int) -> int:
    """The assignment partition of a piece of work: stable across processes and restarts."""
    return zlib.crc32(work_id.encode()) % partitions


def owned_slots(work_id: str, slots: int, partitions: int, owned: frozenset[int]) -> list[int]:
    """Which of ``slots`` numbered pieces of one work (a KafkaSource's consumers) the owner of ``owned`` runs.

    Slot ``k`` is on the partition after the work's own by ``k``: consecutive slots are on consecutive
    partitions, which the group's round-robin assignment gives to different replicas, so the slots spread
    evenly; each is on exactly one partition, so the replicas run exactly ``slots`` between them.
    """
    if partitions <= 0:
        return []
    first = partition_for(work_id, partitions)
    return [slot for slot in range(slots) if (first + slot) % partitions in owned]


class Ownership:
    def __init__(
        self,
        connection: Connectable,
        topic: str,
        group: str,
        partitions: int,
        on_change: OnChange,
        replication_factor: int = 1,
    ):
        self.connection = connection
        # As the other control-plane topics' (3 on a production cluster): its partitions stay led when a
        # broker is down, so the group keeps assigning them.
        self.replication_factor = replication_factor
        self.topic = topic
        self.group = group
        self.wanted_partitions = partitions
        self.on_change = on_change
        self.partitions = 0  # the topic's actual partition count, once known
        self.owned: frozenset[int] = frozenset()
        self.joined = False

    def owns(self, work_id: str) -> bool:
        return self.partitions > 0 and partition_for(work_id, self.partitions) in self.owned

    def slots(self, work_id: str, slots: int) -> list[int]:
        return owned_slots(work_id, slots, self.partitions, self.owned)

    async def run(self) -> None:
        await restarting(self._member, log, "assignment group failed; rejoining", on_failure=self._lost)

    async def _lost(self) -> None:
        await self._set(frozenset(), final=True)

    async def _member(self) -> None:
        self.partitions = await self._ensure_topic()
        consumer = make_consumer(self.connection, self.group)
        await consumer.start()
        try:
            consumer.subscribe([self.topic], listener=RebalanceListener(self.revoked, self.assigned))
            while True:
                await consumer.getmany(timeout_ms=1000)  # keeps the membership alive; nothing to read
        finally:
            await self._set(frozenset(), final=True)
            # Leaving the group at once lets the other replicas take over without waiting for a timeout.
            await asyncio.shield(stop_within(consumer))

    async def _ensure_topic(self) -> int:
        async with admin_client(self.connection) as admin:
            await ensure_topic(admin, TopicSpec(self.topic, self.wanted_partitions, self.replication_factor))
            described = await admin.describe_topics([self.topic])
        count = sum(len(d.get("partitions", [])) for d in described if d.get("topic") == self.topic)
        return count or self.wanted_partitions

    async def _set(self, owned: frozenset[int], final: bool) -> None:
        changed = owned != self.owned
        self.owned = owned
        if changed and final:
            log.info("assignment changed", extra={"topic": self.topic, "owned_partitions": sorted(owned)})
        await self.on_change(final)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        await self._set(
            self.owned - {tp.partition for tp in partitions if tp.topic == self.topic}, final=False
        )

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        self.joined = True
        await self._set(
            self.owned | {tp.partition for tp in partitions if tp.topic == self.topic}, final=True
        )
