"""One producer per Kafka connection the contract names, the service's own included.

Contract entries whose resource lives on another cluster (a Broker's ``kafka-broker-config``, a KafkaSink's
``bootstrapServers``) carry their connection; the receiver and the dispatcher look the producer up by it, a
dictionary lookup per event. A producer starts when the first entry names its connection (retrying with
backoff while the cluster is unreachable or refuses the credentials: the entry's events get 503 meanwhile)
and stops when the last entry naming it goes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from keventing.kafka.client import start_producer, stop_within
from keventing.kafka.connection import KafkaConnection

log = logging.getLogger("keventing.kafka")

OnChange = Callable[[KafkaConnection | None, AIOKafkaProducer | None], None]


class ProducerPool:
    """Producers by connection; ``None`` stands for the service's own (``default``)."""

    def __init__(self, default: KafkaConnection, on_change: OnChange | None = None, **overrides: Any) -> None:
        self.default = default
        self.overrides = overrides
        self.on_change = on_change  # told of every producer started (with it) and stopped (with None)
        self.producers: dict[KafkaConnection | None, AIOKafkaProducer] = {}
        self._starting: dict[KafkaConnection | None, asyncio.Task[None]] = {}
        # Contract entry id → the connection it names (entries on the service's own cluster are not kept).
        self._users: dict[str, KafkaConnection] = {}
        self._releasing: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    def get(self, connection: KafkaConnection | None) -> AIOKafkaProducer | None:
        return self.producers.get(connection)

    async def start_default(self) -> AIOKafkaProducer:
        """Start the service's own producer (retrying until Kafka takes it)."""
        await self._start(None)
        return self.producers[None]

    def use(self, key: str, connection: KafkaConnection | None) -> None:
        """Entry ``key`` names ``connection`` now (None: the service's own, or the entry is gone). A
        connection equal to the service's own still gets a producer of its own: entries look up by theirs."""
        before = self._users.pop(key, None)
        if connection is not None:
            self._users[key] = connection
            if connection not in self.producers and connection not in self._starting:
                self._starting[connection] = asyncio.create_task(self._start(connection))
        if before is not None and before != connection and before not in self._users.values():
            task = asyncio.create_task(self._release(before))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _start(self, connection: KafkaConnection | None) -> None:
        try:
            producer = await start_producer(connection or self.default, **self.overrides)
        finally:
            self._starting.pop(connection, None)
        if connection is not None and connection not in self._users.values():
            await producer.stop()  # no entry wants it any more
            return
        self.producers[connection] = producer
        if self.on_change is not None:
            self.on_change(connection, producer)

    async def _release(self, connection: KafkaConnection) -> None:
        starting = self._starting.pop(connection, None)
        if starting is not None:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        producer = self.producers.pop(connection, None)
        if producer is not None:
            if self.on_change is not None:
                self.on_change(connection, None)
            log.info("stopping a producer no entry uses", extra={"kafka": connection.describe()})
            await producer.stop()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop every producer; ``timeout`` bounds each stop (a producer resending a refused batch would
        otherwise hold shutdown forever)."""
        for task in list(self._starting.values()):
            task.cancel()
        await asyncio.gather(*self._starting.values(), return_exceptions=True)
        for connection, producer in list(self.producers.items()):
            await stop_within(producer, timeout, kafka=(connection or self.default).describe())
        self.producers.clear()
