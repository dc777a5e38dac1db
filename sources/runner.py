"""Follows the contract's Source entries and runs the ones this runner owns: PingSource and timer
IntegrationSource schedules, ApiServerSource watches and ContainerSource processes. Ownership or the contract changing triggers one
reconcile of them; what only the runner can know about a source goes back to the controller as a report."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from keventing import events
from keventing.contract import Source
from keventing.contractstream import ContractFollower
from keventing.kafka.compacted import CompactedTopic
from keventing.ownership import Ownership
from keventing.restarting import retrying
from keventing.sourcereports import SourceReport
from keventing.tls import ClientTrust
from sources.apiserver import ApiServerAccess, ApiServerSources
from sources.clock import Clock
from sources.containers import Backoff, ContainerSupervisor
from sources.ping import PingScheduler
from sources.sender import EventSender
from sources.settings import SourcesSettings

log = logging.getLogger("keventing.sources")


def _scheduled(source: Source) -> bool:
    """Whether the scheduler runs the source: a PingSource's schedule, or a timer IntegrationSource's."""
    return source.ping is not None or source.timer is not None


class SourceRunner:
    def __init__(self, settings: SourcesSettings, clock: Clock) -> None:
        self.settings = settings
        self.contract_keys = settings.contract_keys()  # none configured: the service does not start
        self.clock = clock
        self.contract: ContractFollower[Source] = ContractFollower(
            lambda entry: entry.source, applied=self._reconcile, what="sources"
        )
        self.sources = self.contract.entries  # the follower keeps it current
        self.ownership = Ownership(
            settings.kafka_connection,
            settings.assignment_topic,
            settings.assignment_group,
            settings.assignment_partitions,
            self._reconcile,
            settings.control_plane_replication_factor,
        )
        self.sender: EventSender | None = None
        self.scheduler = PingScheduler(clock, self._send)
        self.containers = ContainerSupervisor(
            Backoff(settings.restart_backoff_seconds, settings.restart_backoff_max_seconds)
        )
        self.apiservers: ApiServerSources | None = None
        self.reports = CompactedTopic(
            settings.kafka_connection,
            settings.source_reports_topic,
            settings.control_plane_replication_factor,
        )
        self._reported: dict[str, bytes] = {}
        self._lock = asyncio.Lock()

    def ready(self) -> bool:
        return self.contract.synced and self.ownership.joined

    async def run(self) -> None:
        access = await ApiServerAccess.load(self.settings.kubeconfig, self.settings.kube_context)
        self.apiservers = ApiServerSources(
            access, self._send, self._report, self.settings.apiserver_recheck_seconds
        )
        await retrying(self._read_reports, log, "cannot start on Kafka yet; retrying")
        tokens = self.settings.token_source()
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            self.sender = EventSender(session, trust=ClientTrust(self.settings.trust_bundle()), tokens=tokens)
            tasks = [
                asyncio.create_task(self._follow_contract()),
                asyncio.create_task(self.ownership.run()),
                asyncio.create_task(self.scheduler.run()),
            ]
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self.containers.stop_all()
                await self.apiservers.stop_all()
                if access is not None:
                    await access.close()
                if tokens is not None:
                    await tokens.close()
                await self.reports.stop()

    async def _read_reports(self) -> None:
        await self.reports.ensure()
        self._reported = await self.reports.snapshot()

    async def _report(self, report: SourceReport) -> None:
        value = report.encode()
        if self._reported.get(report.id) != value:
            await self.reports.put(report.id, value)
            self._reported[report.id] = value

    async def _send(self, source: Source, event: events.Event) -> None:
        assert self.sender is not None
        await self.sender.send(source, event)

    async def _follow_contract(self) -> None:
        await self.contract.follow(
            self.settings.kafka_connection,
            self.settings.contract_topic,
            self.contract_keys,
            self.settings.control_plane_replication_factor,
        )

    async def _reconcile(self, final: bool = True) -> None:
        """Schedule and run exactly the sources this runner owns; stop the others.

        While a rebalance is under way (``final`` False) schedules stop at once, so that a tick is never sent
        by two runners; processes keep running until the new assignment is known, so that a rebalance does
        not restart the ones that stay here (one that moves may briefly overlap with its new owner's).
        """
        async with self._lock:
            owned = {s.id: s for s in self.sources.values() if self.ownership.owns(s.id)}
            for source_id in list(self.scheduler.entries):
                if source_id not in owned or not _scheduled(owned[source_id]):
                    self.scheduler.remove(source_id)
            for source in owned.values():
                if _scheduled(source):
                    self.scheduler.put(source)
            if not final:
                return
            if self.apiservers is not None:
                await self._reconcile_apiservers(owned)
            for source_id in list(self.containers.running):
                if source_id not in owned or owned[source_id].container is None:
                    await self.containers.stop(source_id)
            for source in owned.values():
                if source.container is not None:
                    await self.containers.ensure(source)

    async def _reconcile_apiservers(self, owned: dict[str, Source]) -> None:
        assert self.apiservers is not None
        running = {*self.apiservers.running, *self.apiservers.unconfigured}
        for source_id in running:
            if source_id not in owned or owned[source_id].apiserver is None:
                await self.apiservers.stop(source_id)
        for source in owned.values():
            if source.apiserver is not None:
                await self.apiservers.ensure(source)
        # A source gone from the contract leaves no report behind (one that moved is reported by its new owner).
        if self.contract.synced:
            for source_id in [k for k in self._reported if k not in self.sources]:
                await self.reports.put(source_id, None)
                del self._reported[source_id]
