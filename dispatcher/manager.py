"""Follows the contract and keeps one running EgressConsumer per egress, restarting it when it changes."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiokafka import AIOKafkaProducer

from dispatcher.consumer import EgressConsumer
from dispatcher.delivery import Deliverer
from dispatcher.settings import DispatcherSettings
from keventing import events
from keventing.contract import ContractEntry, Egress
from keventing.contractstream import ContractFollower
from keventing.eventtypes import EventTypeRegistry
from keventing.kafka.client import start_producer

log = logging.getLogger("keventing.dispatcher")


class Running:
    def __init__(self, consumer: EgressConsumer, task: asyncio.Task[None]) -> None:
        self.consumer = consumer
        self.task = task


class DispatcherManager:
    def __init__(self, settings: DispatcherSettings) -> None:
        self.settings = settings
        self.running: dict[str, Running] = {}
        # The whole entry: the egress to run, and the ingress whose topic a reply may be published to.
        self.contract: ContractFollower[ContractEntry] = ContractFollower(lambda entry: entry, self._on_entry)
        self.producer: AIOKafkaProducer | None = None
        self.session: aiohttp.ClientSession | None = None
        self.deliverer: Deliverer | None = None
        self.event_types = EventTypeRegistry(settings.kafka_bootstrap_servers, settings.resources_topic)

    def ready(self) -> bool:
        return self.contract.synced and self.producer is not None

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.settings.max_connections, limit_per_host=0, ttl_dns_cache=300
        )
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        self.deliverer = Deliverer(self.session, self._publish_reply, self.settings.default_timeout_seconds)
        event_types = asyncio.create_task(self.event_types.run())
        try:
            await self._start_producer()
            await self.contract.follow(
                self.settings.kafka_bootstrap_servers,
                self.settings.contract_topic,
                self.settings.control_plane_replication_factor,
            )
        finally:
            event_types.cancel()
            await asyncio.gather(
                event_types, *(self._stop(key) for key in list(self.running)), return_exceptions=True
            )
            if self.producer is not None:
                await self.producer.stop()
            await self.session.close()

    async def _on_entry(self, key: str, old: ContractEntry | None, new: ContractEntry | None) -> None:
        self.event_types.track(key, new)
        await self._apply(key, new.egress if new else None)

    async def _start_producer(self) -> None:
        self.producer = await start_producer(self.settings.kafka_bootstrap_servers)

    async def _apply(self, key: str, egress: Egress | None) -> None:
        current = self.running.get(key)
        if current is not None and egress is not None and current.consumer.egress == egress:
            return
        if current is not None:
            await self._stop(key)
        if egress is not None:
            assert self.deliverer is not None
            consumer = EgressConsumer(
                egress, self.settings.kafka_bootstrap_servers, self.deliverer, self.settings.max_in_flight
            )
            self.running[key] = Running(consumer, asyncio.create_task(consumer.run()))

    async def _stop(self, key: str) -> None:
        running = self.running.pop(key, None)
        if running is None:
            return
        running.task.cancel()
        await asyncio.gather(running.task, return_exceptions=True)

    async def _publish_reply(self, egress: Egress, event: events.Event) -> None:
        reply = egress.reply
        if reply.strategy == "topic":
            assert self.producer is not None and reply.topic is not None
            key, headers, value = events.to_kafka_binary(event)
            await self.producer.send_and_wait(reply.topic, value=value, key=key, headers=headers)
            self.event_types.observe_reply(reply.topic, event)
        elif reply.strategy == "url":
            assert self.session is not None and reply.url is not None
            headers_http, body = events.to_http_binary(event)
            async with self.session.post(reply.url, data=body, headers=headers_http) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    raise RuntimeError(f"reply target {reply.url} answered {response.status}")
