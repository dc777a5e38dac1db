"""The contract topic as the controller writes it: signed records, and repair of every record it did not write.

Every record is written with its tag (``keventing.contractauth``). The controller also follows the topic:
whenever the last record of a key is not the one it wrote (unsigned, a wrong tag, a replay of an earlier
version, or signed with a key other than the current signing key) it writes its own version again, or a
tombstone when it publishes nothing under that key. Data planes never apply the foreign record, and the
topic, compacted, ends with the controller's version, also for a data plane that starts later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from controller.adapter import publish_diff
from keventing.contractauth import ContractKeys
from keventing.kafka.compacted import CompactedTopic, Record
from keventing.metrics import MetricSet
from keventing.restarting import restarting

log = logging.getLogger("keventing.controller")

# Records that are the controller's own contract, signed again with the current key: no one else wrote them.
_RESIGNED = ("adopted", "old-key")


class ContractRepairMetrics(MetricSet):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.repaired = Counter(
            "keventing_contract_repaired_total",
            "Contract records the controller did not write, overwritten with its own version, by reason",
            ["reason"],
            registry=registry,
        )
        for reason in ("unsigned", "bad-tag", "unpublished", *_RESIGNED):  # at 0 from the start (increase())
            self.repaired.labels(reason)


class ContractTopic:
    """The compacted contract topic, written with tags; ``published`` is what is on it, by key."""

    def __init__(
        self, table: CompactedTopic, keys: ContractKeys, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.table = table
        self.keys = keys
        self.published: dict[str, bytes] = {}
        self.metrics = ContractRepairMetrics.of(registry)
        # Key → offset of the controller's last write of it: an earlier record of the key is superseded.
        self._written: dict[str, int] = {}
        # A write and its bookkeeping are one step for the repair: it never mistakes a write for a forgery.
        self._lock = asyncio.Lock()
        self._adopted = False  # the topic was written before contract signing (see load)

    @property
    def topic(self) -> str:
        return self.table.topic

    async def load(self) -> None:
        """What an earlier run published: the last signed record of each key (one that verifies).

        A topic without one signed record was written by a controller from before contract signing (an
        upgrade): its unsigned records are taken as published, and the repair signs them."""
        await self.table.ensure()
        records = await self.table.records()
        rejections = [self.keys.verify(self.topic, r.key, r.value, r.headers) for r in records]
        adopt = bool(records) and all(rejection == "unsigned" for rejection in rejections)
        self._adopted = adopt
        if adopt:
            log.warning("the contract is not signed (written before contract signing): signing it")
        self.published = {}
        for record, rejection in zip(records, rejections, strict=True):
            if rejection is not None and not adopt:
                continue
            if record.value is None:
                self.published.pop(record.key, None)
            else:
                self.published[record.key] = record.value

    async def publish(self, wanted: Mapping[str, bytes]) -> None:
        """Write what changed and tombstone what is gone; ``published`` stays in step with every write."""
        diff = publish_diff(self.published, wanted)
        for key, value in diff.write.items():
            await self.put(key, value)
        for key in diff.tombstone:
            await self.put(key, None)

    async def put(self, key: str, value: bytes | None) -> None:
        async with self._lock:
            await self._put(key, value)

    async def _put(self, key: str, value: bytes | None) -> None:
        offset = await self.table.put(key, value, self.keys.headers(self.topic, key, value))
        self._written[key] = offset
        if value is None:
            self.published.pop(key, None)
        else:
            self.published[key] = value

    async def repair(self) -> None:
        """Follow the topic for ever, overwriting each record the controller did not write."""

        async def stream() -> None:
            async for batch in self.table.follow_records():
                await self.repair_batch(batch)

        await restarting(stream, log, "following the contract to repair it interrupted; reconnecting")

    async def repair_batch(self, batch: list[Record]) -> None:
        latest = {record.key: record for record in batch}  # only the last record of a key counts
        for key, record in latest.items():
            async with self._lock:
                reason = self._foreign(record)
                if reason is None:
                    continue
                value = self.published.get(key)
                await self._put(key, value)
            self.metrics.repaired.labels(reason).inc()
            extra = {
                "key": key,
                "reason": reason,
                "tombstone": record.value is None,
                "restored": value is not None,
            }
            if reason in _RESIGNED:
                log.info("signed a contract record again", extra=extra)
            else:
                log.error("repaired a contract record the controller did not write", extra=extra)

    def _foreign(self, record: Record) -> str | None:
        """Why ``record`` is not the controller's current version of its key; None when it is."""
        if record.offset < self._written.get(record.key, -1):
            return None  # superseded by a later write of the controller's
        rejection = self.keys.verify(self.topic, record.key, record.value, record.headers)
        if rejection is not None:
            if self._adopted and rejection == "unsigned" and record.value == self.published.get(record.key):
                return "adopted"  # written before contract signing: sign it
            return rejection
        if record.value != self.published.get(record.key):
            return "unpublished"  # signed once, but not what is published now: a replay
        if list(record.headers) != self.keys.headers(self.topic, record.key, record.value):
            return "old-key"  # signed with a key kept for verification only: sign it again
        return None
