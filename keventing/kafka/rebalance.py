"""aiokafka's rebalance listener as two callbacks, so that a consumer's owner needs no listener class."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

OnPartitions = Callable[[set[TopicPartition]], Awaitable[None]]


class RebalanceListener(ConsumerRebalanceListener):
    """Awaits ``on_revoked`` and ``on_assigned`` inside the rebalance, as aiokafka's listener contract says."""

    def __init__(self, on_revoked: OnPartitions, on_assigned: OnPartitions) -> None:
        self.on_revoked = on_revoked
        self.on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:  # type: ignore[override]
        await self.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:  # type: ignore[override]
        await self.on_assigned(assigned)
