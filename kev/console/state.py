"""What the console keeps fresh in the background: the resources, the contract, and the flow per edge.

Local mode follows the resource store's two compacted topics (specs and statuses) as ``kev get`` reads
them; Kubernetes mode lists Knative's resources from the API server every few seconds, as ``kev
--kubeconfig`` does. Either way the contract (what the data plane runs) is followed on Kafka, and the
:class:`FlowMeter` reads each Trigger's and Subscription's consumer group: its committed offsets against the
topic's end offsets (lag), and how fast they move (rate).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

import orjson
from pydantic import Field, ValidationError

from kev.client import ClientSettings
from kev.console.topology import Flow
from kev.eventpath import committed_offsets, connection_of, lag
from kev.tail import end_offsets
from keventing.contract import ContractEntry, Egress
from keventing.kafka.compacted import CompactedTopic
from keventing.kafka.connection import Connectable
from keventing.resources import KINDS, Resource, ResourceInvalid, ResourceKey
from keventing.restarting import restarting
from keventing.store import decode_resource

log = logging.getLogger("kev.console")

# The kinds the console lists from an API server: every kind keventing serves but Secrets (never shown) and
# ConfigMaps (every one in the cluster, and none is a step of an event's path).
LISTED_KINDS = tuple(kind for kind in KINDS if kind not in ("Secret", "ConfigMap"))


class ConsoleSettings(ClientSettings):
    """``kev console``'s settings; the resource source is the CLI's (``KEVENTING_KUBERNETES``, ``KUBECONFIG``)."""

    http_host: str = Field(default="0.0.0.0", alias="KEVENTING_HTTP_HOST")
    http_port: int = Field(default=8093, alias="KEVENTING_CONSOLE_PORT")
    # How often the page, the flow meter and (Kubernetes mode) the resource listing refresh.
    refresh_seconds: float = Field(default=2.0, gt=0, alias="KEVENTING_CONSOLE_REFRESH_SECONDS")
    # The most live tails at once: each holds a Kafka consumer.
    max_tails: int = Field(default=20, ge=1, alias="KEVENTING_CONSOLE_MAX_TAILS")


class ResourceView(Protocol):
    @property
    def synced(self) -> bool: ...

    async def run(self) -> None: ...

    def resources(self) -> list[Resource]: ...


class StoreResources:
    """The local store's resources and statuses, followed as they change (no re-reading per page)."""

    def __init__(self, settings: ConsoleSettings) -> None:
        replicas = settings.control_plane_replication_factor
        connection = settings.kafka_connection
        self._topics = {
            "resources": CompactedTopic(connection, settings.resources_topic, replicas),
            "status": CompactedTopic(connection, settings.status_topic, replicas),
        }
        self._tables: dict[str, dict[str, bytes]] = {"resources": {}, "status": {}}
        self._loaded: set[str] = set()
        self._version = 0
        self._cache: tuple[int, list[Resource]] = (-1, [])

    @property
    def synced(self) -> bool:
        return len(self._loaded) == len(self._topics)

    async def run(self) -> None:
        await asyncio.gather(*(self._follow(name) for name in self._topics))

    async def _follow(self, name: str) -> None:
        async def stream() -> None:
            first = True
            async for batch in self._topics[name].follow():
                table = {} if first else self._tables[name]
                for key, value in batch:
                    if value is None:
                        table.pop(key, None)
                    else:
                        table[key] = value
                self._tables[name] = table
                self._version += 1
                first = False
                self._loaded.add(name)

        await restarting(stream, log, f"following {name} interrupted; reconnecting")

    def resources(self) -> list[Resource]:
        if self._cache[0] == self._version:
            return self._cache[1]
        out = []
        statuses = self._tables["status"]
        for key, value in sorted(self._tables["resources"].items()):
            if ResourceKey.parse(key).kind == "Secret":
                continue
            try:
                resource = decode_resource(value, semantics=False)
                status = statuses.get(key)
                if status is not None:
                    resource.status = type(resource.status).model_validate(orjson.loads(status))
            except (ResourceInvalid, ValidationError, ValueError):
                continue  # a stored resource this version cannot read: the controller reports it
            out.append(resource)
        self._cache = (self._version, out)
        return out


class ClusterResources:
    """Knative's resources on an API server, listed every ``refresh_seconds``."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.synced = False
        self._resources: list[Resource] = []
        self._missing: list[str] = []

    async def run(self) -> None:
        from kubernetes_asyncio.client import ApiException

        from kev.client import ClientError
        from kev.kubeclient import KubernetesClient

        while True:
            try:
                async with KubernetesClient.connect(
                    self.settings.kubeconfig, self.settings.kube_context
                ) as kube:
                    while True:
                        listed: list[Resource] = []
                        missing = []
                        for kind in LISTED_KINDS:
                            try:
                                listed.extend(await kube.list(kind, None))
                            except ApiException as err:
                                # A kind whose CRD is not installed (404) or not readable (403) is left
                                # out; the others are still shown.
                                if err.status not in (403, 404):
                                    raise
                                missing.append(f"{kind} ({err.status})")
                        self._resources = listed
                        self.synced = True
                        if missing != self._missing:
                            log.warning("kinds not listed from the API server", extra={"kinds": missing})
                            self._missing = missing
                        await asyncio.sleep(self.settings.refresh_seconds)
            except ClientError as err:
                log.warning("cannot list resources from the API server", extra={"error": str(err)})
                await asyncio.sleep(max(self.settings.refresh_seconds, 5.0))

    def resources(self) -> list[Resource]:
        return self._resources


class ContractView:
    """The contract, followed: which topic each Broker and channel writes, what each egress reads."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self._topic = CompactedTopic(
            settings.kafka_connection, settings.contract_topic, settings.control_plane_replication_factor
        )
        self.entries: dict[str, ContractEntry] = {}
        self.synced = False

    async def run(self) -> None:
        async def stream() -> None:
            first = True
            async for batch in self._topic.follow():
                entries = {} if first else dict(self.entries)
                for key, value in batch:
                    entry = None
                    if value is not None:
                        try:
                            entry = ContractEntry.decode(value)
                        except ValueError:
                            entry = None
                    if entry is None:
                        entries.pop(key, None)
                    else:
                        entries[key] = entry
                self.entries = entries
                self.synced = True
                first = False

        await restarting(stream, log, "following the contract interrupted; reconnecting")


class FlowMeter:
    """Lag and rate per Trigger and Subscription, and the ingress rate per Broker and channel, measured every
    ``interval`` seconds from consumer-group offsets (Kafka's admin API) and topic end offsets."""

    def __init__(
        self, settings: ConsoleSettings, contract: Callable[[], dict[str, ContractEntry]], interval: float
    ) -> None:
        self.settings = settings
        self.contract = contract
        self.interval = interval
        self.flows: dict[str, Flow] = {}
        self.ingress_rates: dict[str, float] = {}
        self._last: dict[str, tuple[float, int]] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.measure()
            except Exception as err:  # Kafka away for a moment: keep the last numbers, try again
                log.warning("measuring consumer lag failed", extra={"error": repr(err)})
            await asyncio.sleep(self.interval)

    def _rate(self, key: str, total: int, now: float) -> float | None:
        last = self._last.get(key)
        self._last[key] = (now, total)
        if last is None or now <= last[0]:
            return None
        return max(total - last[1], 0) / (now - last[0])

    async def measure(self) -> None:
        entries = self.contract()
        egresses = [
            e.egress
            for e in entries.values()
            if e.egress is not None and e.egress.kind in ("Trigger", "Subscription")
        ]
        ingresses = [e.ingress for e in entries.values() if e.ingress is not None and e.ingress.topic]
        by_connection: dict[str, tuple[Connectable, list[Egress], list[str]]] = {}
        for egress in egresses:
            connection = connection_of(self.settings, egress.connection)
            slot = by_connection.setdefault(repr(connection), (connection, [], []))
            slot[1].append(egress)
            slot[2].extend(egress.topics)
        for ingress in ingresses:
            connection = connection_of(self.settings, ingress.connection)
            by_connection.setdefault(repr(connection), (connection, [], []))[2].append(ingress.topic)
        now = time.monotonic()
        flows: dict[str, Flow] = {}
        rates: dict[str, float] = {}
        ends_at: dict[str, dict[tuple[str, int], int]] = {}
        for key, (connection, group_egresses, topics) in by_connection.items():
            ends = ends_at[key] = await end_offsets(connection, sorted(set(topics)))
            committed = await committed_offsets(
                connection, sorted({e.consumer_group for e in group_egresses})
            )
            for egress in group_egresses:
                offsets = committed.get(egress.consumer_group, {})
                done = sum(v for (t, _), v in offsets.items() if t in egress.topics)
                flows[egress.id] = Flow(self._rate(egress.id, done, now), lag(offsets, ends, egress.topics))
        for ingress in ingresses:
            ends = ends_at[repr(connection_of(self.settings, ingress.connection))]
            written = sum(v for (t, _), v in ends.items() if t == ingress.topic)
            rate = self._rate(ingress.id, written, now)
            if rate is not None:
                rates[ingress.id] = rate
        self.flows = flows
        self.ingress_rates = rates
