"""Following the contract from a data-plane process: replay it, then apply each change, forever.

Every (re)connection starts with the whole contract, so a process that lost its connection also learns of
the entries deleted meanwhile: the first batch after a connect is a snapshot, and whatever it lacks is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from keventing.contract import ContractEntry
from keventing.kafka.compacted import CompactedTopic

log = logging.getLogger("keventing.contract")

# on_batch(changes, snapshot): entries by key, None for a deleted one; snapshot=True holds the whole contract.
OnBatch = Callable[[dict[str, ContractEntry | None], bool], Awaitable[None]]


async def follow_contract(
    bootstrap_servers: str, topic: str, on_batch: OnBatch, replication_factor: int = 1
) -> None:
    contract = CompactedTopic(bootstrap_servers, topic, replication_factor)
    while True:
        try:
            snapshot = True
            async for batch in contract.follow():
                changes = {key: _decode(key, value) for key, value in batch}
                if snapshot:
                    changes = {key: entry for key, entry in changes.items() if entry is not None}
                await on_batch(changes, snapshot)
                snapshot = False
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("contract stream interrupted; reconnecting", extra={"error": repr(err)})
            await asyncio.sleep(1)


def _decode(key: str, value: bytes | None) -> ContractEntry | None:
    if value is None:
        return None
    try:
        return ContractEntry.decode(value)
    except ValueError as err:  # e.g. written by a newer controller: skip it rather than stop following
        log.error("ignoring a contract entry this process cannot read", extra={"key": key, "error": str(err)})
        return None
