"""Kafka client configuration (Knative's data-plane defaults) and topic administration."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaError,
    NotCoordinatorError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.protocol.commit import OffsetCommitRequest
from aiokafka.structs import TopicPartition

from keventing.kafka.connection import Connectable, KafkaConnection, as_connection, client_options

log = logging.getLogger(__name__)

# Room for a 1 MiB event (the receiver's default limit) plus its headers, up to a 2 MiB event.
MAX_REQUEST_SIZE = 2 * 1024 * 1024 + 64 * 1024
# Topics keventing creates accept what the producer may send (Kafka's own default is about 1 MiB).
TOPIC_MAX_MESSAGE_BYTES = str(MAX_REQUEST_SIZE)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 1
    replication_factor: int = 1
    config: dict[str, str] = field(default_factory=dict)
    # The id of the resource the topic is for (recorded when keventing creates it, see controller.dataplane).
    owner: str = ""
    # True when the name is derived from the owner's own (a Broker's, a Channel's): an existing topic of that
    # name is the owner's too. False (a KafkaSink's chosen topic): only a topic keventing created is its own.
    claim_existing: bool = False
    # The cluster the topic is on, when it is not keventing's own (a Broker's kafka-broker-config's, a KafkaSink's).
    connection: KafkaConnection | None = None
    # False: only kept (never deleted) while its resource cannot say which cluster it is on (a missing Secret).
    create: bool = True


class StickyPartitioner:
    """Records without a key go to one partition at a time, a batch's worth each (the Java client's sticky
    partitioner, KIP-480), so batches fill up instead of spreading thin over every partition: fewer, larger
    produce requests for the broker. Keyed records hash with murmur2 as before.
    """

    def __init__(self, records_per_partition: int = 100) -> None:
        self.records_per_partition = records_per_partition
        self._keyed = DefaultPartitioner()
        self._partition = -1
        self._left = 0

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is not None:
            return int(self._keyed(key, all_partitions, available))
        candidates = available or all_partitions
        # One partitioner serves every topic of the producer: re-pick when the partition is not this topic's.
        if self._left <= 0 or self._partition not in candidates:
            self._partition = random.choice(candidates)
            self._left = self.records_per_partition
        self._left -= 1
        return self._partition


# After a metadata refresh that failed, the shortest time until the next one.
METADATA_RETRY_INTERVAL = 0.5


def throttle_metadata_refresh(client: Any, interval: float = METADATA_RETRY_INTERVAL) -> None:
    """After a failed metadata refresh, at most one more per ``interval`` s for ``client`` (an aiokafka
    ``AIOKafkaClient``); refreshes that succeed are never held back.

    aiokafka's fetcher asks for a refresh whenever a partition's leader is unknown and waits for it, and a
    refresh against a broker that refuses connections fails at once: with Kafka gone a dispatcher looped
    refresh, fail, refresh at a whole core, logging two errors each time (8,000 a second). A refresh asked
    for sooner is made ``interval`` after the failed one, and whoever asked waits for that one."""
    force = client.force_metadata_update
    failed_at = -interval
    scheduled: asyncio.Future[object] | None = None

    def note(done: asyncio.Future[object]) -> None:
        nonlocal failed_at
        if not done.cancelled() and done.exception() is None and done.result() is False:
            failed_at = asyncio.get_running_loop().time()

    def throttled() -> asyncio.Future[object]:
        nonlocal scheduled
        loop = asyncio.get_running_loop()
        if scheduled is not None:
            return asyncio.shield(scheduled)
        wait = failed_at + interval - loop.time()
        if wait <= 0:
            now: asyncio.Future[object] = force()
            now.add_done_callback(note)
            return now
        later = scheduled = loop.create_future()

        def refresh() -> None:
            nonlocal scheduled
            scheduled = None
            done: asyncio.Future[object] = force()
            done.add_done_callback(note)
            done.add_done_callback(functools.partial(_settle, later))

        loop.call_later(wait, refresh)
        return asyncio.shield(later)

    client.force_metadata_update = throttled


def _settle(future: asyncio.Future[object], done: asyncio.Future[object]) -> None:
    if future.done():
        return
    if done.cancelled():
        future.cancel()
    elif done.exception() is not None:
        future.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        future.set_result(done.result())


def make_producer(connection: Connectable, **overrides: Any) -> AIOKafkaProducer:
    """A producer that only acknowledges what every in-sync replica has (acks=all, idempotent).

    No linger by default: aiokafka keeps one request in flight per broker and batches whatever arrives
    meanwhile, so waiting longer only adds latency (measured in bench/: lingering 2 ms halved the
    receiver's throughput at 32 concurrent requests).
    """
    options: dict[str, Any] = {
        **client_options(connection),
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 0,
        "partitioner": StickyPartitioner(),
        "max_batch_size": 256 * 1024,
        "max_request_size": MAX_REQUEST_SIZE,
        "request_timeout_ms": 10_000,
        "metadata_max_age_ms": 60_000,
    }
    options.update(overrides)
    producer = AIOKafkaProducer(**options)
    throttle_metadata_refresh(producer.client)
    return producer


# How long a client's stop may take at shutdown: a consumer in a group sends LeaveGroup, which aiokafka waits
# for up to its request timeout (40 s); a broker that does not answer (gone, partitioned) held SIGTERM that long.
STOP_TIMEOUT = 5.0


# What a client that is given up on leaves behind, said in its warning.
_GIVEN_UP = {
    "consumer": "left to its session timeout (its group rebalances once the broker stops hearing from it)",
    "producer": "records not yet sent are lost (none of them was acknowledged to anyone)",
}


async def stop_within(
    client: AIOKafkaConsumer | AIOKafkaProducer, timeout: float | None = STOP_TIMEOUT, **context: Any
) -> bool:
    """``client.stop()``, given up after ``timeout`` s (``None``: waits); False, with a warning saying what
    that leaves behind and ``context`` in its fields, if it was given up."""
    try:
        async with asyncio.timeout(timeout):
            await client.stop()
    except TimeoutError:
        kind = "consumer" if isinstance(client, AIOKafkaConsumer) else "producer"
        log.warning(
            f"a Kafka {kind} did not stop in time: {_GIVEN_UP[kind]}", extra={"timeout_s": timeout, **context}
        )
        return False
    return True


def make_consumer(connection: Connectable, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer that never commits by itself: offsets move only after delivery."""
    options: dict[str, Any] = {
        **client_options(connection),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "latest",
        "max_poll_records": 500,
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 2_000,
        "max_poll_interval_ms": 300_000,
        "fetch_max_wait_ms": 100,
        # Every trigger has its own consumer: 1 MiB buffers per partition add up to gigabytes at 100 triggers.
        "max_partition_fetch_bytes": 256 * 1024,
        "fetch_max_bytes": 8 * 1024 * 1024,
        "metadata_max_age_ms": 30_000,
    }
    options.update(overrides)
    consumer = AIOKafkaConsumer(**options)
    throttle_metadata_refresh(consumer._client)  # noqa: SLF001 (aiokafka's client; no public handle)
    return consumer


async def start_producer(connection: Connectable, **overrides: Any) -> AIOKafkaProducer:
    """Start a producer, retrying with backoff while Kafka is unreachable (services start before Kafka) or
    refuses the credentials (they may be fixed meanwhile); every failed attempt is logged with its reason."""
    delay = 0.5
    where = as_connection(connection).describe()
    while True:
        producer = make_producer(connection, **overrides)
        try:
            await producer.start()
        except Exception as err:
            await producer.stop()
            log.warning(
                "cannot connect to Kafka yet; retrying",
                extra={
                    "kafka": where,
                    "error": await connection_failure(connection, err),
                    "retry_in_s": delay,
                },
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        log.info("connected to Kafka", extra={"kafka": where})
        return producer


@asynccontextmanager
async def admin_client(connection: Connectable) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(**client_options(connection), request_timeout_ms=15_000)
    try:
        await client.start()
    except Exception as err:
        await client.close()
        raise KafkaError(
            f"cannot connect to Kafka at {as_connection(connection).describe()}: "
            f"{await connection_failure(connection, err)}"
        ) from None
    try:
        yield client
    finally:
        await client.close()


async def connection_failure(connection: Connectable, err: BaseException) -> str:
    """Why connecting failed, in words a status can carry. aiokafka reports a refused password or an
    untrusted certificate only as a failure to bootstrap (the reason goes to its log), so one bootstrap
    server is dialled again here to learn the reason."""
    if not isinstance(err, KafkaConnectionError) or "bootstrap" not in str(err):
        return str(err) or type(err).__name__
    conn = as_connection(connection)
    options = {k: v for k, v in client_options(conn).items() if k != "bootstrap_servers"}
    for server in conn.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            probe = await create_conn(host, int(port), request_timeout_ms=5_000, **options)
        except Exception as reason:
            return f"{server.strip()}: {_explain(reason, conn)}"
        probe.close()
    return str(err)


def _explain(reason: BaseException, conn: KafkaConnection) -> str:
    text = str(reason) or type(reason).__name__
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"the broker's TLS certificate is not trusted (check ca.crt): {reason.verify_message}"
    if "Authentication failed" in text or isinstance(reason, SaslAuthenticationFailed):
        return f"the broker refused the SASL credentials (check user, password and sasl.mechanism): {text}"
    if conn.uses_tls and "closed" in text:
        return f"the broker closed the TLS connection (does it require a client certificate?): {text}"
    return text


async def ensure_topic(admin: AIOKafkaAdminClient, spec: TopicSpec) -> bool:
    """Create ``spec`` unless it exists; True when this call created it."""
    topic = NewTopic(
        name=spec.name,
        num_partitions=spec.partitions,
        replication_factor=spec.replication_factor,
        topic_configs=dict(spec.config),
    )
    try:
        response = await admin.create_topics([topic])
    except TopicAlreadyExistsError:
        return False
    for _name, code, *rest in getattr(response, "topic_errors", []):
        if code == TopicAlreadyExistsError.errno:
            return False
        if code:
            message = rest[0] if rest else ""
            raise KafkaError(f"creating topic {spec.name} failed with error code {code}: {message}")
    await _wait_for_topic(admin, spec.name)
    return True


async def _wait_for_topic(admin: AIOKafkaAdminClient, name: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if name in await admin.list_topics():
            return
        await asyncio.sleep(0.05)


async def delete_topic(admin: AIOKafkaAdminClient, name: str) -> bool:
    try:
        await admin.delete_topics([name])
    except UnknownTopicOrPartitionError:
        return False
    return True


def compacted(partitions: int = 1, replication_factor: int = 1, name: str = "") -> TopicSpec:
    return TopicSpec(
        name=name,
        partitions=partitions,
        replication_factor=replication_factor,
        config={"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"},
    )


async def group_positioned(admin: AIOKafkaAdminClient, group: str, topic: str) -> bool:
    """True once ``group`` has a committed offset on every partition of ``topic``.

    The dispatcher commits a new group's starting position as soon as it is assigned, so this is how
    anyone can tell that events sent from now on will reach the egress.
    """
    described = await admin.describe_topics([topic])
    partitions = {
        p["partition"] for d in described if d.get("topic") == topic for p in d.get("partitions", [])
    }
    if not partitions:
        return False
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError, NotCoordinatorError):
        return False  # the group's coordinator is still being elected or loaded: not positioned yet
    have = {tp.partition for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}
    return partitions <= have


async def commit_group_offsets(
    admin: AIOKafkaAdminClient,
    group: str,
    offsets: Mapping[TopicPartition, int],
    coordinator: int | None = None,
) -> None:
    """Commit ``offsets`` for ``group`` from outside it: one OffsetCommit request with no generation, as Kafka's
    own AdminClient.alterConsumerGroupOffsets sends it (aiokafka's admin client has no such call). Kafka takes
    it only while the group has no members."""
    if coordinator is None:
        coordinator = await admin.find_coordinator(group)
    by_topic: dict[str, list[tuple[int, int, str]]] = {}
    for tp, offset in sorted(offsets.items()):
        by_topic.setdefault(tp.topic, []).append((tp.partition, offset, ""))
    request = OffsetCommitRequest(
        group,
        OffsetCommitRequest.DEFAULT_GENERATION_ID,
        "",
        OffsetCommitRequest.DEFAULT_RETENTION_TIME,
        list(by_topic.items()),
    )
    response = await admin._send_request(request, coordinator)
    for _topic, partitions in response.topics:
        for _partition, error_code in partitions:
            if error_code:
                raise for_code(error_code)(f"committing offsets of {group} failed")
