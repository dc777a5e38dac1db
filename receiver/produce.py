"""Produce requests for the receiver's batches, one partition's batches at a time, without aiokafka's sender.

aiokafka's sender costs a fixed ~80 µs of Python per produce request on top of the write: its background
routine wakes twice per request (``asyncio.wait`` over fresh waiters), a task and a handler object per
request, the accumulator's bookkeeping, and the generic ``Struct`` encoding and decoding of a request whose
shape never changes. At the receiver's ~16 records per request that is about a quarter of the ingress's CPU
per event (measured in bench/; README, "Why the ingress target is still missed").

:class:`PartitionLanes` sends record batches built by aiokafka's own builder over aiokafka's own client
(connections, metadata, request timeouts), with a request object whose bytes are laid out once per
partition and a response read with ``struct``. The guarantees are the producer's: acks=all, and
idempotence under a producer id of its own (asked for with InitProducerId, as aiokafka's producer does):

* One batch in flight per partition, in the order submitted (keyed records keep their order).
* A batch is numbered (producer id, epoch, base sequence) when it first goes out, and the partition's
  sequence moves only once Kafka acknowledged it, so a batch Kafka refused (too large, invalid) leaves the
  numbering intact for the next one: no epoch bump is needed for a definite refusal.
* A batch whose outcome is unknown (connection broken, request timed out, leader moved) is sent again with
  the same numbers until Kafka answers: a duplicate is answered ``DuplicateSequenceNumber`` and counts as
  acknowledged. Given up after ``delivery_timeout`` (Java's ``delivery.timeout.ms``), the producer id is
  renewed, so a later batch is never taken for that one's duplicate.
* Kafka forgetting the producer (``UnknownProducerId``, ``OutOfOrderSequenceNumber``,
  ``InvalidProducerEpoch``) renews the id and numbers the batch again from 0. A batch that had gone out
  unanswered under the old id and is sent again under the new one may be stored twice: at least once.

A batch whose caller stopped waiting (its bound passed) before it ever went out is not sent: nobody was
told it would be stored, and nothing was numbered for it.

The common case costs no task and no coroutine: a batch submitted to an idle partition whose leader's
connection is up, under a producer id already known, is written to that connection at once (as aiokafka's
connection would write it, its answer read by the connection's own reader, a timer per request instead of a
timeout context) and settled from a callback on the answer. Anything else (the partition busy, no id yet, no
connection, and every answer but an acknowledgement) goes through the task that waits its turn, sends again,
backs off and renews.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import aiokafka.errors as Errors
from aiokafka.client import AIOKafkaClient, ConnectionGroup
from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.protocol.transaction import InitProducerIdRequest
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

log = logging.getLogger("keventing.receiver")

PRODUCE = 0
# Produce v3–v7 share the request's layout (v3: transactional id; v4–v7 add answers, not fields); Kafka 4
# serves v3 and later, aiokafka's own producer sends at most v7.
MIN_VERSION, MAX_VERSION = 3, 7

_HEADER = struct.Struct(">hhi")  # api key, api version, correlation id (then the client id)
_REQUEST_HEAD = struct.Struct(">hhii")  # transactional id (null), acks, timeout ms, topic count (1)
_PARTITION = struct.Struct(">iii")  # partition count (1), partition, record set size
_INT32 = struct.Struct(">i")
_PARTITION_ANSWER = struct.Struct(">ihq")  # partition, error code, base offset

# Where a v2 record batch keeps the fields numbered here, and the CRC that covers them.
_CRC_AT, _CRC_FROM, _PRODUCER_AT = 17, 21, 43
_PRODUCER = struct.Struct(">qhi")  # producer id, epoch, base sequence

_NO_ERROR = 0
_DUPLICATE = Errors.DuplicateSequenceNumber.errno
_FORGOTTEN = {
    Errors.UnknownProducerId.errno,
    Errors.OutOfOrderSequenceNumber.errno,
    Errors.InvalidProducerEpoch.errno,
}
_RENEWALS_PER_BATCH = 3


def _string(value: str | None) -> bytes:
    if value is None:
        return _INT32.pack(-1)[2:]  # int16 -1
    data = value.encode()
    return struct.pack(">h", len(data)) + data


class _Header:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def encode(self) -> bytes:
        return self.data


class _AnswerHeader:
    __slots__ = ("correlation_id",)

    def __init__(self, correlation_id: int) -> None:
        self.correlation_id = correlation_id


class _Answer:
    """A produce response to one partition: (error code, base offset)."""

    def __init__(self, version: int) -> None:
        self.version = version

    def decode(self, data: io.BytesIO) -> tuple[int, int]:
        view = data.getbuffer()
        at = data.tell() + 4  # one topic
        (name,) = struct.unpack_from(">h", view, at)
        at += 2 + name + 4  # its name, then one partition
        _partition, error, offset = _PARTITION_ANSWER.unpack_from(view, at)
        return error, offset


_ANSWERS = {version: _Answer(version) for version in range(MIN_VERSION, MAX_VERSION + 1)}


class _Produce:
    """A ProduceRequest for one partition's record batch, in the shape aiokafka's connection sends.

    Duck-typed to aiokafka's request classes: ``prepare`` picks the version the broker serves,
    ``build_request_header`` and ``encode`` give the bytes, ``parse_response_header`` and
    ``RESPONSE_TYPE.decode`` read the answer.
    """

    API_KEY = PRODUCE
    __slots__ = ("head", "records", "API_VERSION", "RESPONSE_TYPE")

    def __init__(self, head: bytes, records: bytes | bytearray) -> None:
        self.head = head
        self.records = records
        self.API_VERSION = MAX_VERSION
        self.RESPONSE_TYPE = _ANSWERS[MAX_VERSION]

    def prepare(self, versions: dict[int, tuple[int, int]]) -> _Produce:
        low, high = versions.get(PRODUCE, (0, -1))
        version = min(high, MAX_VERSION)
        if version < max(low, MIN_VERSION):
            raise Errors.IncompatibleBrokerVersion(
                f"the broker serves Produce v{low}-v{high}; the receiver needs one of v{MIN_VERSION}-v{MAX_VERSION}"
            )
        self.API_VERSION = version
        self.RESPONSE_TYPE = _ANSWERS[version]
        return self

    def build_request_header(self, correlation_id: int, client_id: str) -> _Header:
        return _Header(_HEADER.pack(PRODUCE, self.API_VERSION, correlation_id) + _client_id(client_id))

    def encode(self) -> bytes:
        return self.head + _INT32.pack(len(self.records)) + self.records

    def parse_response_header(self, data: io.BytesIO) -> _AnswerHeader:
        (correlation_id,) = _INT32.unpack(data.read(4))
        return _AnswerHeader(correlation_id)

    def __repr__(self) -> str:  # aiokafka's connection logs requests at debug level
        return f"Produce(v{self.API_VERSION}, {len(self.records)} bytes)"


_CLIENT_IDS: dict[str, bytes] = {}


def _client_id(client_id: str) -> bytes:
    data = _CLIENT_IDS.get(client_id)
    if data is None:
        data = _CLIENT_IDS[client_id] = _string(client_id)
    return data


def restamp(records: bytearray, producer_id: int, epoch: int, sequence: int) -> None:
    """Number an already built v2 record batch again (a renewed producer id), its CRC with it."""
    _PRODUCER.pack_into(records, _PRODUCER_AT, producer_id, epoch, sequence)
    struct.pack_into(">I", records, _CRC_AT, calc_crc32c(bytes(records[_CRC_FROM:])))


@dataclass
class _Identity:
    """The producer id the lanes number their batches under; ``generation`` counts renewals."""

    producer_id: int = -1
    epoch: int = -1
    generation: int = 0
    sequences: dict[TopicPartition, int] = field(default_factory=dict)


class _Queued:
    __slots__ = ("builder", "result", "abandoned", "records", "stamp", "sent")

    def __init__(
        self, builder: BatchBuilder, result: asyncio.Future[int], abandoned: Callable[[], bool] | None
    ) -> None:
        self.builder: BatchBuilder | None = builder
        self.result = result
        self.abandoned = abandoned
        self.records: bytearray | None = None
        self.stamp: tuple[int, int] | None = None  # (generation, base sequence) it was numbered with
        self.sent = False


class PartitionLanes:
    """Record batches to Kafka partitions over ``client``, one in flight per partition, in order."""

    def __init__(
        self,
        client: AIOKafkaClient,
        *,
        acks: int = -1,
        request_timeout_ms: int = 10_000,
        retry_backoff: float = 0.1,
        delivery_timeout: float = 120.0,
    ) -> None:
        self.client = client
        self.acks = acks
        self.request_timeout_ms = request_timeout_ms
        self.retry_backoff = retry_backoff
        self.delivery_timeout = delivery_timeout
        self._identity = _Identity()
        self._renewing: asyncio.Task[None] | None = None
        self._tails: dict[TopicPartition, asyncio.Future[None]] = {}  # each partition's last batch's turn
        self._heads: dict[TopicPartition, bytes] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Batches written at once (``_send_now``), by their turn, until their answer is in.
        self._answering: dict[asyncio.Future[None], tuple[TopicPartition, _Queued, asyncio.TimerHandle]] = {}
        self.closed = False

    def submit(
        self, tp: TopicPartition, builder: BatchBuilder, abandoned: Callable[[], bool] | None = None
    ) -> asyncio.Future[int]:
        """Queue ``builder``'s batch to ``tp`` behind the partition's earlier ones: the future gets Kafka's
        base offset or the error. ``abandoned()`` (else the future done, cancelled) true when the batch's
        turn comes: its callers stopped waiting, and it is not sent."""
        loop = asyncio.get_running_loop()
        result: asyncio.Future[int] = loop.create_future()
        turn: asyncio.Future[None] = loop.create_future()
        before = self._tails.get(tp)
        self._tails[tp] = turn
        batch = _Queued(builder, result, abandoned)
        if before is None and not self._abandoned(batch):
            connection = self._connection_to(tp)
            if connection is not None and self._send_now(connection, tp, batch, turn):
                return result
        self._deliver_later(tp, batch, before, turn)
        return result

    def idle(self) -> bool:
        return not self._tasks and not self._answering

    def close(self) -> None:
        """Stop at once: what is queued or in flight fails with ConnectionError."""
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        for turn, (tp, batch, timer) in list(self._answering.items()):
            timer.cancel()
            _fail(batch.result, ConnectionError("the producer stopped before Kafka acknowledged"))
            self._turn_over(tp, turn)
        self._answering.clear()  # their answers, if they come, find nothing to settle

    async def flush(self, timeout: float | None) -> None:
        """Wait for the batches queued so far (up to ``timeout`` s), then stop what is left."""
        waiting: set[asyncio.Future[None]] = {*self._tasks, *self._answering}
        if waiting:
            await asyncio.wait(waiting, timeout=timeout)
        tasks = set(self._tasks)
        self.close()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------------------- at once

    def _abandoned(self, batch: _Queued) -> bool:
        return batch.abandoned() if batch.abandoned is not None else batch.result.done()

    def _connection_to(self, tp: TopicPartition) -> AIOKafkaConnection | None:
        """The connection to ``tp``'s leader if a batch can be written to it now, under a known id."""
        if self.closed or self._identity.producer_id < 0:
            return None
        leader = self.client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            return None
        connection = self.client._conns.get((leader, ConnectionGroup.DEFAULT))  # noqa: SLF001
        return connection if connection is not None and connection.connected() else None

    def _send_now(
        self, connection: AIOKafkaConnection, tp: TopicPartition, batch: _Queued, turn: asyncio.Future[None]
    ) -> bool:
        """Write the batch's produce request to ``connection`` as its ``send`` would (False: not written, the
        task sends it); its answer comes to :meth:`_answered`."""
        identity = self._identity
        try:
            request = _Produce(self._head(tp), b"").prepare(connection._versions)  # noqa: SLF001
        except KafkaError:
            return False  # the task's attempt raises it as the batch's outcome
        records = self._numbered(tp, batch, identity)
        request.records = records
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[int, int]] = loop.create_future()
        correlation_id = connection._next_correlation_id()  # noqa: SLF001
        header = request.build_request_header(correlation_id, connection._client_id).data  # noqa: SLF001
        size = len(header) + len(request.head) + 4 + len(records)
        batch.sent = True
        try:
            connection._writer.writelines(  # noqa: SLF001 (no copy of the records into one message)
                (_INT32.pack(size), header, request.head, _INT32.pack(len(records)), records)
            )
        except OSError as err:
            connection.close(reason=CloseReason.CONNECTION_BROKEN, exc=err)
            return False  # not written: the task sends it again, with the same numbers
        connection._requests.append((correlation_id, request, answer))  # noqa: SLF001
        timeout = connection._request_timeout  # noqa: SLF001
        timer = loop.call_later(timeout, _request_timed_out, connection, answer)
        self._answering[turn] = (tp, batch, timer)
        answer.add_done_callback(functools.partial(self._answered, tp, batch, identity, turn, timer))
        return True

    def _answered(
        self,
        tp: TopicPartition,
        batch: _Queued,
        identity: _Identity,
        turn: asyncio.Future[None],
        timer: asyncio.TimerHandle,
        answer: asyncio.Future[tuple[int, int]],
    ) -> None:
        timer.cancel()
        if self._answering.pop(turn, None) is None:
            return  # closed meanwhile: the batch failed with the lanes
        outcome: tuple[int, int] | KafkaError
        try:
            outcome = answer.result()
        except KafkaError as err:  # the connection broke or the request timed out: outcome unknown
            outcome = err
        except BaseException as err:  # noqa: BLE001 (whatever it is, it is this batch's outcome)
            _fail(batch.result, err)
            self._turn_over(tp, turn)
            return
        if not isinstance(outcome, KafkaError) and outcome[0] in (_NO_ERROR, _DUPLICATE):
            self._acknowledged(tp, batch, identity, outcome[1])
            self._turn_over(tp, turn)
            return
        self._deliver_later(tp, batch, None, turn, (identity, outcome))

    # ------------------------------------------------------------------------------- in a task

    def _deliver_later(
        self,
        tp: TopicPartition,
        batch: _Queued,
        before: asyncio.Future[None] | None,
        turn: asyncio.Future[None],
        first: tuple[_Identity, tuple[int, int] | KafkaError] | None = None,
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(tp, batch, before, turn, first))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self,
        tp: TopicPartition,
        batch: _Queued,
        before: asyncio.Future[None] | None,
        turn: asyncio.Future[None],
        first: tuple[_Identity, tuple[int, int] | KafkaError] | None = None,
    ) -> None:
        try:
            if before is not None and not before.done():
                await asyncio.shield(before)
            await self._send(tp, batch, first)
        except asyncio.CancelledError:
            _fail(batch.result, ConnectionError("the producer stopped before Kafka acknowledged"))
            raise
        except Exception as err:  # noqa: BLE001 (whatever it is, it is this batch's outcome)
            _fail(batch.result, err)
        finally:
            self._turn_over(tp, turn)

    def _turn_over(self, tp: TopicPartition, turn: asyncio.Future[None]) -> None:
        """The partition's next batch may go: ``turn`` was the last one's, and is done."""
        if not turn.done():
            turn.set_result(None)
        if self._tails.get(tp) is turn:
            del self._tails[tp]

    async def _send(
        self,
        tp: TopicPartition,
        batch: _Queued,
        first: tuple[_Identity, tuple[int, int] | KafkaError] | None = None,
    ) -> None:
        """Send ``batch`` until Kafka acknowledges or refuses it for good (``first``: the outcome of an attempt
        already made, and the id it was made under)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.delivery_timeout
        renewals = 0
        while True:
            if first is not None:
                identity, outcome = first
                first = None
            else:
                if not batch.sent and self._abandoned(batch):
                    raise TimeoutError("given up by its callers before it was sent")  # never numbered
                if self.closed and not batch.sent:
                    raise ConnectionError("the producer is stopping")
                identity = await self._current_identity()
                outcome = await self._attempt(tp, batch, identity)
            if isinstance(outcome, KafkaError):
                if not outcome.retriable or loop.time() >= deadline:
                    self._give_up(batch, identity)
                    raise outcome
                await self._back_off(outcome)
                continue
            error, offset = outcome
            if error == _NO_ERROR or error == _DUPLICATE:
                self._acknowledged(tp, batch, identity, offset)
                return
            kind = Errors.for_code(error)
            if error in _FORGOTTEN and renewals < _RENEWALS_PER_BATCH:
                renewals += 1
                self._renew(identity, f"Kafka answered {kind.__name__} for {tp.topic}[{tp.partition}]")
                continue
            if kind.retriable and loop.time() < deadline:
                await self._back_off(kind())
                continue
            # Refused for good: the batch is not in the log (had an earlier, unanswered attempt been stored,
            # this one would have been answered as its duplicate), so the partition's numbering stays as it was.
            self._give_up(batch, identity, refused=not kind.retriable)
            raise kind(f"{tp.topic}[{tp.partition}]")

    async def _attempt(
        self, tp: TopicPartition, batch: _Queued, identity: _Identity
    ) -> tuple[int, int] | KafkaError:
        """One produce request of ``batch``: Kafka's answer (error code, base offset), or why there was none."""
        records = self._numbered(tp, batch, identity)
        leader = self.client.cluster.leader_for_partition(tp)
        try:
            if leader is None or leader < 0:
                raise Errors.LeaderNotAvailableError(f"no leader known for {tp.topic}[{tp.partition}]")
            batch.sent = True
            answer: tuple[int, int] = await self.client.send(leader, _Produce(self._head(tp), records))
        except KafkaError as err:
            return err
        return answer

    def _acknowledged(self, tp: TopicPartition, batch: _Queued, identity: _Identity, offset: int) -> None:
        """Kafka stored ``batch`` (or had: a duplicate): the partition's numbering moves past it."""
        assert batch.stamp is not None and batch.records is not None
        if batch.stamp[0] == identity.generation:
            identity.sequences[tp] = (batch.stamp[1] + _record_count(batch.records)) & 0x7FFFFFFF
        if not batch.result.done():  # cancelled: its caller's bound passed
            batch.result.set_result(offset)

    def _numbered(self, tp: TopicPartition, batch: _Queued, identity: _Identity) -> bytearray:
        sequence = identity.sequences.get(tp, 0)
        if batch.records is None:
            assert batch.builder is not None
            batch.builder._set_producer_state(identity.producer_id, identity.epoch, sequence)  # noqa: SLF001
            batch.records = batch.builder._build()  # noqa: SLF001 (aiokafka's C builder; once per batch)
            batch.builder = None
        elif batch.stamp is not None and batch.stamp[0] != identity.generation:
            restamp(batch.records, identity.producer_id, identity.epoch, sequence)
        else:
            return batch.records
        batch.stamp = (identity.generation, sequence)
        return batch.records

    def _head(self, tp: TopicPartition) -> bytes:
        head = self._heads.get(tp)
        if head is None:
            head = (
                _REQUEST_HEAD.pack(-1, self.acks, self.request_timeout_ms, 1)
                + _string(tp.topic)
                + _PARTITION.pack(1, tp.partition, 0)[:-4]
            )
            self._heads[tp] = head
        return head

    async def _back_off(self, error: Exception) -> None:
        if getattr(error, "invalid_metadata", False) or isinstance(error, Errors.KafkaConnectionError):
            self.client.force_metadata_update()
        log.warning("a produce request failed; sending it again", extra={"error": repr(error)})
        await asyncio.sleep(self.retry_backoff)

    def _give_up(self, batch: _Queued, identity: _Identity, refused: bool = False) -> None:
        """Stop sending ``batch``: if it went out without a definite answer, it may be in the log under its
        numbers, so the id is renewed (a later batch numbered the same would be taken for its duplicate)."""
        if batch.sent and not refused and batch.stamp is not None and batch.stamp[0] == identity.generation:
            self._renew(identity, "gave up on a batch Kafka may have stored")

    def _renew(self, identity: _Identity, reason: str) -> None:
        if identity is not self._identity or identity.producer_id < 0:
            return  # renewed already
        log.warning("renewing the producer id", extra={"reason": reason, "producer_id": identity.producer_id})
        self._identity = _Identity(generation=identity.generation + 1)

    async def _current_identity(self) -> _Identity:
        identity = self._identity
        if identity.producer_id >= 0:
            return identity
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.get_running_loop().create_task(self._init_producer_id(identity))
        await asyncio.shield(self._renewing)
        return self._identity

    async def _init_producer_id(self, identity: _Identity) -> None:
        while True:
            try:
                node = self.client.get_random_node()
                if node is None:
                    raise Errors.NodeNotReadyError("no broker known")
                answer = await self.client.send(node, InitProducerIdRequest(None, 60_000))
                kind = Errors.for_code(answer.error_code)
                if kind is not Errors.NoError:
                    raise kind()
            except KafkaError as err:
                if not err.retriable:
                    raise
                log.warning("asking Kafka for a producer id failed; asking again", extra={"error": repr(err)})
                self.client.force_metadata_update()
                await asyncio.sleep(self.retry_backoff)
                continue
            identity.producer_id, identity.epoch = answer.producer_id, answer.producer_epoch
            return


def _record_count(records: bytearray) -> int:
    (count,) = _INT32.unpack_from(records, 57)
    return int(count)


def _request_timed_out(connection: AIOKafkaConnection, answer: asyncio.Future[tuple[int, int]]) -> None:
    """As aiokafka's client on a request timeout: the request fails, and the connection is renewed."""
    if not answer.done():
        answer.set_exception(Errors.RequestTimedOutError())
        connection.close(reason=CloseReason.CONNECTION_TIMEOUT)


def _fail(future: asyncio.Future[int], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
