"""RequestReply in the receiver: a request POSTed to a RequestReply's address is held open until its reply
comes back through the Broker, then answered with that reply (200, binary mode), or with 504 once the
RequestReply's timeout has passed.

The request is produced to the Broker's topic (a 202 would have meant that; here the caller waits for more)
with a correlation id in the RequestReply's correlation attribute::

    <event id>:<signature>:<process>

``process`` names this receiver process (random, per start), ``signature`` is HMAC-SHA256 with the contract
key over the RequestReply, the event id and the process (base64url): Knative's shape
(``<id>:<AES-GCM of the id>:<pod index>``), signed instead of encrypted. Whoever answers copies the id into
the reply attribute of the event it sends back to the Broker (an HTTP reply to the Trigger that delivered the
request, or a new event POSTed to the Broker).

Replies are read straight from the Broker's topic: each process that holds requests for a Broker reads every
partition from the end (no consumer group, nothing committed: a request lives in this process's memory only)
and takes the events whose reply attribute is a valid id of its own. The reader is positioned before the first
request is produced, so no reply can come before it; it stops after a while without requests. Knative makes a
Trigger per data-plane pod instead; here no Trigger is created, so several receiver replicas and workers need
no routing: each reads for itself. A reply nobody waits for (timed out, duplicate, forged) is ignored, and stays
on the Broker like any event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence

import orjson
from aiokafka import AIOKafkaConsumer

from keventing import events
from keventing.contract import Ingress
from keventing.contractauth import ContractKeys
from keventing.kafka.client import make_consumer
from keventing.kafka.connection import KafkaConnection
from receiver.answer import Answer

log = logging.getLogger("keventing.receiver.requestreply")

# A reader with no request waiting stops after this long.
IDLE_SECONDS = 300.0
# How long the first request for a Broker may wait for its reader to be positioned.
START_SECONDS = 15.0
Store = Callable[[events.Event], Awaitable[Answer | None]]


def _text(message: str) -> bytes:
    return f"{message}\n".encode()


class ReplyReader:
    """Every partition of one topic, read from the end; each record's headers handed to ``on_record``."""

    def __init__(
        self,
        topic: str,
        connection: KafkaConnection,
        on_record: Callable[[Sequence[tuple[str, bytes]], bytes | None], None],
    ) -> None:
        self.topic = topic
        self.connection = connection
        self.on_record = on_record
        self.waiting = 0
        self.last_used = time.monotonic()
        self.ready = asyncio.Event()
        self.failed: BaseException | None = None
        self.task: asyncio.Task[None] | None = None

    async def _position(self, consumer: AIOKafkaConsumer) -> None:
        # Without a group, a subscription is assigned every partition of the topic (as it grows, too).
        consumer.subscribe([self.topic])
        await consumer.start()
        deadline = time.monotonic() + START_SECONDS
        while not (assigned := consumer.assignment()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {self.topic} has no partitions to read replies from")
            await asyncio.sleep(0.05)
        await consumer.seek_to_end(*assigned)
        for tp in assigned:
            await consumer.position(tp)  # resolved now: a reply produced after this is read

    async def run(self) -> None:
        consumer = make_consumer(self.connection, None, auto_offset_reset="latest", fetch_max_wait_ms=50)
        try:
            try:
                await self._position(consumer)
            except Exception as err:
                self.failed = err
                raise
            finally:
                self.ready.set()
            while self.waiting or time.monotonic() - self.last_used < IDLE_SECONDS:
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                for records in batches.values():
                    for record in records:
                        self.on_record(record.headers or (), record.value)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()


class RequestReplies:
    """The requests this receiver process holds, and the readers that bring their replies."""

    def __init__(self, keys: ContractKeys, connection: KafkaConnection) -> None:
        self.keys = keys
        self.connection = connection  # the receiver's own cluster, for Brokers without one of their own
        self.process = secrets.token_hex(6)
        self._pending: dict[tuple[str, str], asyncio.Future[events.Event]] = {}
        # The reply attribute each waiting RequestReply reads, by its ingress id.
        self._reply_attributes: dict[str, str] = {}
        self._readers: dict[tuple[str, KafkaConnection], ReplyReader] = {}

    def _signature(self, key: bytes, ingress_id: str, event_id: str, process: str) -> str:
        message = "\0".join((ingress_id, event_id, process)).encode()
        return base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode().rstrip("=")

    def correlation_id(self, ingress_id: str, event_id: str) -> str:
        signature = self._signature(self.keys.keys[0], ingress_id, event_id, self.process)
        return f"{event_id}:{signature}:{self.process}"

    def verified_event_id(self, ingress_id: str, value: str) -> str | None:
        """The request's event id when ``value`` is a correlation id this process made for ``ingress_id``."""
        parts = value.rsplit(":", 2)  # an event id may itself hold colons
        if len(parts) != 3 or parts[2] != self.process:
            return None
        event_id, signature, process = parts
        for key in self.keys.keys:  # any key the contract is verified with (rotation)
            if hmac.compare_digest(signature, self._signature(key, ingress_id, event_id, process)):
                return event_id
        return None

    def stop(self) -> None:
        for reader in self._readers.values():
            if reader.task is not None:
                reader.task.cancel()

    async def _reader(self, ingress: Ingress) -> ReplyReader:
        connection = ingress.connection or self.connection
        key = (ingress.topic, connection)
        reader = self._readers.get(key)
        if reader is None or (reader.task is not None and reader.task.done()):
            reader = ReplyReader(ingress.topic, connection, self._on_record)
            reader.task = asyncio.create_task(reader.run(), name=f"replies {ingress.topic}")
            reader.task.add_done_callback(lambda task: self._reader_done(key, reader, task))
            self._readers[key] = reader
        reader.waiting += 1
        try:
            async with asyncio.timeout(START_SECONDS + 5):
                await reader.ready.wait()
        except BaseException:
            reader.waiting -= 1
            raise
        if reader.failed is not None:
            reader.waiting -= 1
            raise RuntimeError(f"cannot read replies from {ingress.topic}: {reader.failed}")
        return reader

    def _reader_done(
        self, key: tuple[str, KafkaConnection], reader: ReplyReader, task: asyncio.Task[None]
    ) -> None:
        if self._readers.get(key) is reader:
            del self._readers[key]
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "reply reader stopped", extra={"topic": reader.topic, "error": repr(task.exception())}
            )

    def _on_record(self, headers: Sequence[tuple[str, bytes]], value: bytes | None) -> None:
        if not self._pending:
            return
        attributes = events.attributes_from_kafka(headers)
        if "specversion" not in attributes:  # structured mode: the attributes are in the value
            try:
                document = orjson.loads(value) if value else None
            except orjson.JSONDecodeError:
                return
            if not isinstance(document, dict):
                return
            attributes = {k: str(v) for k, v in document.items() if k not in ("data", "data_base64")}
        for ingress_id, attribute in self._reply_attributes.items():
            value_text = attributes.get(attribute)
            if value_text is None:
                continue
            event_id = self.verified_event_id(ingress_id, value_text)
            if event_id is None:
                continue
            future = self._pending.get((ingress_id, event_id))
            if future is None or future.done():
                continue  # timed out, or answered already: a duplicate reply is ignored
            try:
                future.set_result(events.from_kafka(headers, value))
            except events.InvalidEvent as err:
                log.warning("a reply is not a valid event", extra={"error": str(err), "reply_to": event_id})

    async def handle(self, ingress: Ingress, event: events.Event, store: Store) -> Answer:
        spec = ingress.request_reply
        assert spec is not None
        event_id = event.attributes["id"]
        key = (ingress.id, event_id)
        if key in self._pending:
            return Answer(409, _text(f"a request with id {event_id} is already waiting for its reply"))
        try:
            reader = await self._reader(ingress)
        except (RuntimeError, TimeoutError, OSError) as err:
            return Answer(
                503, _text(f"replies cannot be read from the Broker: {err}"), (("retry-after", "5"),)
            )
        future: asyncio.Future[events.Event] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        self._reply_attributes[ingress.id] = spec.reply_attribute
        try:
            attributes = {
                **event.attributes,
                spec.correlation_attribute: self.correlation_id(ingress.id, event_id),
            }
            failure = await store(events.Event(attributes, event.data))
            if failure is not None:
                return failure
            try:
                async with asyncio.timeout(spec.timeout):
                    reply = await future
            except TimeoutError:
                return Answer(
                    504,
                    _text(
                        f"no reply to request {event_id} within {spec.timeout:g} s (RequestReply "
                        f"{ingress.namespace}/{ingress.name}: an event with {spec.reply_attribute} set to the "
                        f"request's {spec.correlation_attribute})"
                    ),
                )
            headers, body = events.to_http_binary(reply)
            return Answer(200, body, tuple(headers.items()))
        finally:
            del self._pending[key]
            if not any(k[0] == ingress.id for k in self._pending):
                self._reply_attributes.pop(ingress.id, None)
            reader.waiting -= 1
            reader.last_used = time.monotonic()
