"""The Kafka side of every adapter: topics and the contract, the same in local and Kubernetes mode.

The contract is the one document between the planes, so wherever resources come from, it is published
here, on the compacted ``<instance>.contract`` topic, and only what changed is written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from controller.adapter import publish_diff
from keventing.contract import ContractEntry
from keventing.kafka.client import TopicSpec, admin_client, delete_topic, ensure_topic
from keventing.kafka.compacted import CompactedTopic
from keventing.settings import CommonSettings
from keventing.sourcereports import SourceReport, follow_reports

log = logging.getLogger("keventing.controller")


class KafkaDataPlane:
    """Creates and deletes the topics keventing owns and publishes the contract."""

    def __init__(self, settings: CommonSettings) -> None:
        self.bootstrap_servers = settings.kafka_bootstrap_servers
        self.contract = CompactedTopic(
            settings.kafka_bootstrap_servers,
            settings.contract_topic,
            settings.control_plane_replication_factor,
        )
        self.published_contract: dict[str, bytes] = {}
        self.managed_topics: set[str] = set()
        # Topic name → why creating it failed; the owning resource's status says so until it succeeds.
        self.topic_errors: dict[str, str] = {}
        # What the sources runners report (kept current from the start); each listener hears of a change.
        self.source_reports: dict[str, SourceReport] = {}
        self.report_listeners: list[Callable[[], None]] = []
        self._reports = CompactedTopic(
            settings.kafka_bootstrap_servers,
            settings.source_reports_topic,
            settings.control_plane_replication_factor,
        )
        self._following: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Learn what an earlier run published, so that a restart writes only what changed since."""
        await self.contract.ensure()
        self.published_contract = await self.contract.snapshot()
        self.managed_topics = {t for t in map(_topic_of, self.published_contract.values()) if t}
        self._following = asyncio.create_task(
            follow_reports(self._reports, self.source_reports, self._reports_changed)
        )

    def _reports_changed(self) -> None:
        for listener in self.report_listeners:
            listener()

    async def stop(self) -> None:
        if self._following is not None:
            self._following.cancel()
            await asyncio.gather(self._following, return_exceptions=True)
        await self.contract.stop()

    async def create_topics(self, topics: Mapping[str, TopicSpec]) -> bool:
        """Create the missing topics; True when a creation failed or recovered (reconcile again)."""
        changed = False
        async with admin_client(self.bootstrap_servers) as admin:
            existing = set(await admin.list_topics())
            for name, spec in topics.items():
                self.managed_topics.add(name)
                if name in existing:
                    changed |= self.topic_errors.pop(name, None) is not None
                    continue
                try:
                    await ensure_topic(admin, spec)
                    log.info("created topic", extra={"topic": name, "partitions": spec.partitions})
                    changed |= self.topic_errors.pop(name, None) is not None
                except Exception as err:  # the broker's status says why; the next pass retries
                    self.topic_errors[name] = f"creating topic {name} failed: {err}"
                    changed = True
        return changed

    async def delete_topics(self, wanted: Mapping[str, TopicSpec]) -> None:
        unwanted = self.managed_topics - set(wanted)
        if not unwanted:
            return
        async with admin_client(self.bootstrap_servers) as admin:
            for name in sorted(unwanted):
                await delete_topic(admin, name)
                log.info("deleted topic", extra={"topic": name})
                self.managed_topics.discard(name)

    async def publish_contract(self, contract: Mapping[str, ContractEntry]) -> None:
        wanted = {key: entry.encode() for key, entry in contract.items()}
        await publish(self.contract, self.published_contract, wanted)


async def publish(topic: CompactedTopic, published: dict[str, bytes], wanted: Mapping[str, bytes]) -> None:
    """Write what changed on a compacted topic and tombstone what is gone, keeping ``published`` in step
    with every write (a failed pass leaves it true to what is on the topic)."""
    diff = publish_diff(published, wanted)
    for key, value in diff.write.items():
        await topic.put(key, value)
        published[key] = value
    for key in diff.tombstone:
        await topic.put(key, None)
        del published[key]


def _topic_of(value: bytes) -> str | None:
    entry = ContractEntry.decode(value)
    return entry.ingress.topic if entry.ingress and entry.ingress.owns_topic else None
