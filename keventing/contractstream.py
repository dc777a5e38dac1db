"""Following the contract from a data-plane process: replay it, then apply each change, forever.

Every (re)connection starts with the whole contract, so a process that lost its connection also learns of
the entries deleted meanwhile: the first batch after a connect is a snapshot, and whatever it lacks is gone.
``ContractFollower`` turns those batches into one service's view: the entries it serves, by key.

Only records the controller signed are applied (``keventing.contractauth``): one with a missing or wrong
tag, value or tombstone, is logged, counted (``keventing_contract_rejected_total``) and skipped, so the
last valid version of its key stays served until the controller repairs the topic.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from keventing.contract import ContractEntry
from keventing.contractauth import ContractKeys
from keventing.kafka.compacted import CompactedTopic, Record
from keventing.kafka.connection import Connectable
from keventing.metrics import MetricSet
from keventing.restarting import restarting

log = logging.getLogger("keventing.contract")

T = TypeVar("T")

# on_batch(changes, snapshot): entries by key, None for a deleted one; snapshot=True holds the whole contract.
OnBatch = Callable[[dict[str, ContractEntry | None], bool], Awaitable[None]]


class ContractMetrics(MetricSet):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.rejected = Counter(
            "keventing_contract_rejected_total",
            "Contract records not applied: not signed by the controller (unsigned, bad-tag) or unreadable",
            ["reason"],
            registry=registry,
        )
        for reason in ("unsigned", "bad-tag", "unreadable"):  # at 0 from the start: increase() sees the first
            self.rejected.labels(reason)


async def follow_contract(
    connection: Connectable,
    topic: str,
    on_batch: OnBatch,
    keys: ContractKeys,
    replication_factor: int = 1,
    registry: CollectorRegistry = REGISTRY,
) -> None:
    contract = CompactedTopic(connection, topic, replication_factor)
    metrics = ContractMetrics.of(registry)

    async def stream() -> None:
        snapshot = True
        async for batch in contract.follow_records():
            changes = trusted_changes(topic, batch, keys, metrics)
            if snapshot:
                changes = {key: entry for key, entry in changes.items() if entry is not None}
            await on_batch(changes, snapshot)
            snapshot = False

    await restarting(stream, log, "contract stream interrupted; reconnecting")


def trusted_changes(
    topic: str, batch: list[Record], keys: ContractKeys, metrics: ContractMetrics
) -> dict[str, ContractEntry | None]:
    """The last signed record of each key in ``batch``, decoded (None: deleted, or unreadable)."""
    changes: dict[str, ContractEntry | None] = {}
    for record in batch:
        rejection = keys.verify(topic, record.key, record.value, record.headers)
        if rejection is not None:
            metrics.rejected.labels(rejection).inc()
            log.error(
                "ignoring a contract record the controller did not sign",
                extra={"key": record.key, "reason": rejection, "tombstone": record.value is None},
            )
            continue
        changes[record.key] = _decode(record.key, record.value, metrics)
    return changes


def _decode(key: str, value: bytes | None, metrics: ContractMetrics) -> ContractEntry | None:
    if value is None:
        return None
    try:
        return ContractEntry.decode(value)
    except ValueError as err:  # e.g. written by a newer controller: skip it rather than stop following
        metrics.rejected.labels("unreadable").inc()
        log.error("ignoring a contract entry this process cannot read", extra={"key": key, "error": str(err)})
        return None


class ContractFollower(Generic[T]):
    """One service's view of the contract: each entry projected to what the service serves, kept by key.

    ``project(entry)`` picks the part the service serves (None: nothing here). ``apply(key, old, new)`` is
    awaited for every projection that changed, with None for an absent one; ``applied()`` once per batch.
    A snapshot replaces the table, so entries deleted while disconnected are applied as removals.
    """

    def __init__(
        self,
        project: Callable[[ContractEntry], T | None],
        apply: Callable[[str, T | None, T | None], Awaitable[None]] | None = None,
        applied: Callable[[], Awaitable[None]] | None = None,
        what: str = "entries",
    ) -> None:
        self.project = project
        self.apply = apply
        self.applied = applied
        self.what = what  # how the "contract loaded" log line counts the entries
        self.entries: dict[str, T] = {}  # updated in place: a service may keep a reference to it
        self.synced = False

    async def follow(
        self, connection: Connectable, topic: str, keys: ContractKeys, replication_factor: int = 1
    ) -> None:
        await follow_contract(connection, topic, self.on_batch, keys, replication_factor)

    async def on_batch(self, changes: dict[str, ContractEntry | None], snapshot: bool) -> None:
        projected = {key: None if entry is None else self.project(entry) for key, entry in changes.items()}
        if snapshot:
            projected = {**dict.fromkeys(set(self.entries) - set(projected)), **projected}
        for key, new in projected.items():
            old = self.entries.get(key)
            if new is None:
                self.entries.pop(key, None)
            else:
                self.entries[key] = new
            if self.apply is not None and old != new:
                await self.apply(key, old, new)
        if not self.synced:
            log.info("contract loaded", extra={self.what: len(self.entries)})
        self.synced = True
        if self.applied is not None:
            await self.applied()
