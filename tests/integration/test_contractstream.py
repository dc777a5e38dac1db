"""Following the contract: the first batch after a connect is the whole contract, without deleted entries."""

from __future__ import annotations

import asyncio
import uuid

from keventing.contract import ContractEntry, Ingress
from keventing.contractstream import follow_contract
from keventing.kafka.compacted import CompactedTopic


def _entry(name: str) -> ContractEntry:
    ingress = Ingress(
        id=f"Broker/ns/{name}", kind="Broker", namespace="ns", name=name, path=f"/ns/{name}", topic="t"
    )
    return ContractEntry(ingress=ingress)


async def test_snapshot_then_changes(kafka: str) -> None:
    topic = f"contract-{uuid.uuid4().hex[:8]}"
    table = CompactedTopic(kafka, topic)
    await table.ensure()
    for name in ("a", "b"):
        await table.put(f"Broker/ns/{name}", _entry(name).encode())
    await table.put("Broker/ns/a", None)
    await table.put("Broker/ns/bad", b'{"version": 99}')
    batches: list[tuple[dict, bool]] = []

    async def on_batch(changes: dict[str, ContractEntry | None], snapshot: bool) -> None:
        batches.append((changes, snapshot))

    follower = asyncio.create_task(follow_contract(kafka, topic, on_batch))
    try:
        for _ in range(100):
            if batches:
                break
            await asyncio.sleep(0.05)
        changes, snapshot = batches[0]
        assert snapshot
        assert set(changes) == {"Broker/ns/b"}  # the deleted one and the unreadable one are absent
        await table.put("Broker/ns/b", None)
        for _ in range(100):
            if len(batches) > 1:
                break
            await asyncio.sleep(0.05)
        assert batches[1] == ({"Broker/ns/b": None}, False)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await table.stop()
