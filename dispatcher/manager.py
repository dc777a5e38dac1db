"""Follows the contract and keeps each egress's EgressConsumers running, restarting them when it changes.

A Trigger or Subscription has one member of its consumer group on every dispatcher replica. A KafkaSource has
exactly ``spec.consumers`` members between all the replicas (Knative's virtual replicas): each is a slot on
the dispatchers' assignment topic, run by the replica that owns it (``keventing.ownership``), and moves to
another when that replica leaves.

It also owns what the egresses share: the HTTP transport and the Kafka producers (one per cluster that
replies go to: the dispatcher's own, and a Broker's own cluster when its kafka-broker-config names one), and
the shared fetches its Triggers read their Broker's records from (one per cluster).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaProducer

from dispatcher.consumer import EgressConsumer
from dispatcher.dispatch import RecordDispatcher
from dispatcher.http1 import Http1Post
from dispatcher.identity import IdentityPost
from dispatcher.jobsink import JobPost
from dispatcher.logsink import LoggingPost
from dispatcher.metrics import METRICS
from dispatcher.replies import ReplyPublisher
from dispatcher.settings import DispatcherSettings
from dispatcher.sharedfetch import SharedFetches
from dispatcher.transport import Post
from keventing import events
from keventing.contract import ContractEntry, Egress
from keventing.contractstream import ContractFollower
from keventing.eventtypes import EventTypeRegistry
from keventing.kafka.client import STOP_TIMEOUT
from keventing.kafka.connection import KafkaConnection
from keventing.kafka.pool import ProducerPool
from keventing.kubeapi import KubeApi
from keventing.ownership import Ownership
from keventing.serviceaccounttokens import ServiceAccountTokenSource
from keventing.topics import egress_reserved_reason
from keventing.tracing import Tracing

log = logging.getLogger("keventing.dispatcher")


class Running:
    """An egress's members of its consumer group in this dispatcher, by slot (a KafkaSource may have several).

    Each member has its own partitions, schedule and commits, so ordering, retries and at-least-once hold per
    partition as with one; they share the delivery (``make`` builds them alike) and its metrics.
    """

    def __init__(self, egress: Egress, make: Callable[[], EgressConsumer]) -> None:
        self.egress = egress
        self.make = make
        self.members: dict[int, tuple[EgressConsumer, asyncio.Task[None]]] = {}

    async def place(self, slots: Iterable[int]) -> None:
        """Run the members of ``slots``, and only those: the others stop, the ones kept are not disturbed."""
        wanted = set(slots)
        stopping = [self.members.pop(slot)[1] for slot in list(self.members) if slot not in wanted]
        for slot in sorted(wanted - self.members.keys()):
            consumer = self.make()
            self.members[slot] = (consumer, asyncio.create_task(consumer.run()))
        await _cancel(stopping)

    async def stop(self) -> None:
        await self.place(())


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class DispatcherManager:
    def __init__(self, settings: DispatcherSettings, tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.contract_keys = settings.contract_keys()  # none configured: the service does not start
        self.tracing = tracing
        self.running: dict[str, Running] = {}
        # The whole entry: the egress to run, and the ingress whose topic a reply may be published to.
        self.contract: ContractFollower[ContractEntry] = ContractFollower(lambda entry: entry, self._on_entry)
        self.producer: AIOKafkaProducer | None = None
        self.producers = ProducerPool(settings.kafka_connection)
        self.post: Post | None = None
        self.tokens: ServiceAccountTokenSource | None = None
        # The API server (Kubernetes mode): TokenRequest, and JobSinks' Jobs. Reached on first use only.
        self.kube = KubeApi()
        self.shared = SharedFetches(METRICS, settings.fetch_options)
        self.event_types = EventTypeRegistry(
            settings.kafka_connection, settings.resources_topic, settings.eventtype_limits
        )
        # Which KafkaSource consumer slots this replica runs.
        self.ownership = Ownership(
            settings.kafka_connection,
            settings.assignment_topic,
            settings.assignment_group,
            settings.assignment_partitions,
            self._on_ownership,
            settings.control_plane_replication_factor,
        )

    def ready(self) -> bool:
        return self.contract.synced and self.producer is not None and self.ownership.joined

    async def run(self) -> None:
        trust_bundle, tokens = (
            self.settings.trust_bundle(),
            self.settings.token_source(),
        )  # a bad setting stops the start
        client = Http1Post(self.settings.max_connections, trust_bundle, tokens)
        self.tokens = tokens
        if tokens is not None:
            self.kube = tokens.api  # one client of the API server for tokens and Jobs
        # IntegrationSinks' log: destinations are written to the log, never sent over the network.
        self.post = LoggingPost(client)
        event_types = asyncio.create_task(self.event_types.run())
        ownership = asyncio.create_task(self.ownership.run())
        try:
            self.producer = await self.producers.start_default()
            await self.contract.follow(
                self.settings.kafka_connection,
                self.settings.contract_topic,
                self.contract_keys,
                self.settings.control_plane_replication_factor,
            )
        finally:
            # Leaving the assignment group stops this replica's KafkaSource slots and hands them over at once;
            # the other consumers stop meanwhile, not after it (each stop is bounded: with a broker that does
            # not answer, one after the other added up to 15 s, side by side they take 10).
            event_types.cancel()
            await asyncio.gather(
                _cancel([ownership]),
                event_types,
                *(self._stop(key) for key in list(self.running)),
                return_exceptions=True,
            )
            await self.shared.stop()
            await self.producers.stop(STOP_TIMEOUT)
            await client.close()
            await self.kube.close()
            if self.tracing is not None:
                self.tracing.shutdown()  # exports the spans still queued
            log.info("stopped: every consumer and producer closed")

    async def _produce(
        self,
        connection: KafkaConnection | None,
        topic: str,
        key: bytes | None,
        headers: events.KafkaHeaders,
        value: bytes | None,
    ) -> None:
        producer = self.producers.get(connection)
        if producer is None:  # the delivery is retried: by then the producer may be connected
            raise ConnectionError(
                "the dispatcher is not connected to the Kafka cluster of the reply topic yet"
            )
        await producer.send_and_wait(topic, value=value, key=key, headers=headers)

    async def _on_entry(self, key: str, old: ContractEntry | None, new: ContractEntry | None) -> None:
        self.event_types.track(key, new)
        egress = new.egress if new else None
        reserved = egress_reserved_reason(egress, self.settings.instance) if egress is not None else None
        if reserved is not None:  # the controller never publishes one: whatever wrote it, it is not run
            log.warning("refused an egress on a reserved topic", extra={"egress": key, "reason": reserved})
            egress = None
        await self._apply(key, egress)

    async def _apply(self, key: str, egress: Egress | None) -> None:
        current = self.running.get(key)
        if current is not None and egress is not None and current.egress == egress:
            return
        if current is not None:
            await self._stop(key)
        if egress is not None and egress.paused:
            # Not run: its consumer group is left empty, so that its offsets can be altered (kev replay).
            log.info("egress paused", extra={"egress": key})
            egress = None
        replies_on_kafka = egress is not None and egress.reply.strategy == "topic"
        self.producers.use(key, egress.connection if egress is not None and replies_on_kafka else None)
        if egress is not None:
            assert self.post is not None
            metrics = METRICS.for_egress(egress)
            # A Trigger's or Subscription's own ServiceAccount's tokens (Kubernetes mode), else the shared ones.
            post = (
                self.post
                if egress.identity is None
                else IdentityPost(self.post, self.tokens, egress.identity)
            )
            if egress.job is not None:  # a JobSink's job: destination becomes a Job per event
                post = JobPost(post, egress.job, self.kube)
            # Replies go to the topic on the egress's own cluster (a Trigger's Broker's).
            replies = ReplyPublisher(
                functools.partial(self._produce, egress.connection), post, self.event_types.observe_reply
            )
            dispatcher = RecordDispatcher(
                egress,
                post,
                replies,
                metrics,
                self.settings.default_timeout_seconds,
                tracing=self.tracing,
            )
            # Only Triggers share: many on one Broker read the same topic. The others read their own topics.
            shared = None
            if egress.kind == "Trigger" and self.settings.shared_fetch:
                shared = self.shared.get(egress.connection or self.settings.kafka_connection)
            make = functools.partial(
                EgressConsumer,
                egress,
                self.settings.kafka_connection,
                dispatcher,
                metrics,
                self.settings.max_in_flight,
                shared,
                self.settings.fetch_options,
            )
            running = self.running[key] = Running(egress, make)
            await running.place(self._slots(egress))

    def _slots(self, egress: Egress) -> list[int]:
        """The members of ``egress``'s group this replica runs: its one, or the KafkaSource slots it owns."""
        if egress.consumers is None:
            return [0]
        return self.ownership.slots(egress.id, egress.consumers)

    async def _on_ownership(self, final: bool) -> None:
        # A revocation starts every rebalance, and most slots come back: they run on until it is known.
        if not final:
            return
        for key, running in list(self.running.items()):
            # Checked right before placing: one replaced or stopped meanwhile must not start members again.
            if self.running.get(key) is running and running.egress.consumers is not None:
                await running.place(self._slots(running.egress))

    async def _stop(self, key: str) -> None:
        running = self.running.pop(key, None)
        if running is not None:
            await running.stop()
