"""Following the contract from a data-plane process: replay it, then apply each change, forever.

Every (re)connection starts with the whole contract, so a process that lost its connection also learns of
the entries deleted meanwhile: the first batch after a connect is a snapshot, and whatever it lacks is gone.
``ContractFollower`` turns those batches into one service's view: the entries it serves, by key.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from keventing.contract import ContractEntry
from keventing.kafka.compacted import CompactedTopic
from keventing.kafka.connection import Connectable
from keventing.restarting import restarting

log = logging.getLogger("keventing.contract")

T = TypeVar("T")

# on_batch(changes, snapshot): entries by key, None for a deleted one; snapshot=True holds the whole contract.
OnBatch = Callable[[dict[str, ContractEntry | None], bool], Awaitable[None]]


async def follow_contract(
    connection: Connectable, topic: str, on_batch: OnBatch, replication_factor: int = 1
) -> None:
    contract = CompactedTopic(connection, topic, replication_factor)

    async def stream() -> None:
        snapshot = True
        async for batch in contract.follow():
            changes = {key: _decode(key, value) for key, value in batch}
            if snapshot:
                changes = {key: entry for key, entry in changes.items() if entry is not None}
            await on_batch(changes, snapshot)
            snapshot = False

    await restarting(stream, log, "contract stream interrupted; reconnecting")


def _decode(key: str, value: bytes | None) -> ContractEntry | None:
    if value is None:
        return None
    try:
        return ContractEntry.decode(value)
    except ValueError as err:  # e.g. written by a newer controller: skip it rather than stop following
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

    async def follow(self, connection: Connectable, topic: str, replication_factor: int = 1) -> None:
        await follow_contract(connection, topic, self.on_batch, replication_factor)

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
