"""The ingress request handler: path → contract Ingress → validated event → Kafka record → status code.

Errors map to HTTP statuses in one place (:func:`handle`): invalid event 400, unsupported content mode 415,
an ingress whose topic is reserved to keventing or Kafka 403 (whatever the contract says, nothing is
produced to one: :mod:`keventing.topics`), unknown resource 404, too large (the body, or the whole record for Kafka) 413, Kafka not connected yet or
unable to acknowledge in time 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from opentelemetry.trace import Span, SpanKind, StatusCode
from prometheus_client import Counter, Histogram

from keventing import events
from keventing import tracing as trace_context
from keventing.contract import Ingress
from keventing.topics import reserved_reason
from keventing.tracing import TRACEPARENT
from receiver.answer import Answer
from receiver.batching import RetryAlone
from receiver.metrics import IngressMetrics
from receiver.requestreply import RequestReplies
from receiver.transform import Transformer

log = logging.getLogger("keventing.receiver")

# (ingress, key, value, headers) → Kafka's acknowledgement of the record on the ingress's topic, on the
# ingress's cluster; raises TimeoutError when Kafka has not acknowledged within the receiver's bound
# (KEVENTING_PRODUCE_TIMEOUT_SECONDS).
Produce = Callable[[Ingress, bytes | None, bytes | None, list[tuple[str, bytes]]], Awaitable[object]]
# The direct path's: called without awaiting, it queues the record at once (raising NotConnected without a
# producer) and returns what to await for the acknowledgement (a batch's future, shared with the records of
# its batch); it may fail with RetryAlone, and then ``submit_alone`` sends the record as a batch of its own.
Submit = Callable[[Ingress, bytes | None, bytes | None, list[tuple[str, bytes]]], Awaitable[object]]
Record = tuple[bytes | None, list[tuple[str, bytes]], bytes]

ALLOW = "POST, OPTIONS"
# Per record and per header in Kafka's record format (v2): varints and attributes, generously rounded up.
RECORD_OVERHEAD = 64
HEADER_OVERHEAD = 10


class NotConnected(ConnectionError):
    """The receiver has no Kafka producer yet (starting, or Kafka unreachable since start)."""


def record_bytes(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """An upper bound of the size of one record in a produce request, headers included."""
    size = RECORD_OVERHEAD + len(key or b"") + len(value or b"") + HEADER_OVERHEAD * len(headers)
    for name, data in headers:
        size += len(name) + len(data)
    return size


ACCEPTED = Answer(202)


class IngressTable:
    """The ingresses in the contract, by request path; replaced as the contract changes."""

    def __init__(self) -> None:
        self.by_path: dict[str, Ingress] = {}
        self.by_id: dict[str, Ingress] = {}

    def put(self, ingress: Ingress) -> None:
        self.remove(ingress.id)
        self.by_id[ingress.id] = ingress
        self.by_path[ingress.path] = ingress

    def remove(self, id_: str) -> None:
        old = self.by_id.pop(id_, None)
        if old is not None and self.by_path.get(old.path) is old:
            del self.by_path[old.path]


class IngressHandler:
    def __init__(
        self,
        table: IngressTable,
        produce: Produce,
        max_event_bytes: int,
        retry_after: int,
        metrics: IngressMetrics,
        on_event: Callable[[Ingress, events.Event], None] | None = None,
        max_record_bytes: int | None = None,
        instance: str = "keventing",
        tracing: trace_context.Tracing | None = None,
        event_type_label: bool = True,
        transformer: Transformer | None = None,
        requests: RequestReplies | None = None,
        submit: Submit | None = None,
        submit_alone: Submit | None = None,
    ) -> None:
        self.table = table
        # None: the direct path (``begin``) awaits ``produce`` in a task, as ``handle`` does.
        self.submit = submit
        self.submit_alone = submit_alone or produce
        self._tasks: set[asyncio.Future[object]] = set()
        self.tracing = tracing  # None: off, only a sender's trace context is carried through
        # EventTransforms: answered by transforming, never produced (their ingress has no topic).
        self.transformer = transformer or Transformer(timeout=30.0)
        # RequestReplies: held until their reply comes back through the Broker (receiver.requestreply).
        self.requests = requests
        self.instance = instance
        # Topic → why it is reserved (None: it is not), computed once per topic, off the hot path.
        self._reserved: dict[str, str | None] = {}
        self.produce = produce
        self.max_event_bytes = max_event_bytes
        self.retry_after = str(retry_after)
        # The producer's max_request_size: Kafka (and aiokafka) refuse a larger record, and aiokafka does not
        # count headers, so a record with large headers would be resent forever.
        self.max_record_bytes = max_record_bytes
        self.on_event = on_event
        self.metrics = metrics
        self._metrics: dict[tuple[str, str, str, int], tuple[Counter, Histogram]] = {}
        self.event_type_label = event_type_label  # False: "" (the cardinality of event types is not wanted)

    def lookup(self, path: str) -> Ingress | None:
        return self.table.by_path.get(path.rstrip("/") or "/")

    def reserved(self, topic: str) -> str | None:
        if topic not in self._reserved:
            self._reserved[topic] = reserved_reason(topic, self.instance)
        return self._reserved[topic]

    def too_large(self, content_length: int | None) -> bool:
        return content_length is not None and content_length > self.max_event_bytes

    def begin(
        self, ingress: Ingress, headers: dict[str, str], body: bytes, reply: Callable[[Answer], None]
    ) -> Awaitable[Answer] | None:
        """The direct path's :meth:`handle` without a task per event: ``reply`` gets the answer, at once for a
        refusal or from the callback on Kafka's acknowledgement of the record's batch (None returned). A
        transform or a RequestReply is answered by :meth:`handle`, whose awaitable is returned instead."""
        if ingress.transform is not None or ingress.request_reply is not None or self.submit is None:
            return self.handle(ingress, headers, body)
        started = time.perf_counter()
        event_type = ""
        try:
            admitted = self._admit(ingress, headers, body, None, started)
            if isinstance(admitted, Answer):
                reply(admitted)
                return None
            event, record = admitted
            event_type = event.attributes["type"]
            prepared = self._prepare(ingress, event, headers, record)
            if isinstance(prepared, Answer):
                reply(self._count(ingress, event_type, started, prepared))
                return None
            key, value, record_headers, span = prepared
            try:
                acknowledged = self.submit(ingress, key, value, record_headers)
            except NotConnected as err:
                self._finish(ingress, event, span, self.failure(ingress, event, err), started, reply)
                return None
            self._answer_on(acknowledged, ingress, event, key, value, record_headers, span, started, reply)
        except Exception:  # never answer 202 for something that went wrong
            log.exception("unexpected error in the ingress")
            reply(self._count(ingress, event_type, started, Answer(500, _text("internal error"))))
        return None

    def future_of(self, acknowledged: Awaitable[object]) -> asyncio.Future[object]:
        """A batch's future as it is; a coroutine (a record sent alone) as a task this handler holds on to."""
        if isinstance(acknowledged, asyncio.Future):
            return acknowledged
        task = asyncio.ensure_future(acknowledged)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def handle(
        self,
        ingress: Ingress,
        headers: dict[str, str],
        body: bytes,
        check: Callable[[Mapping[str, object]], str | None] | None = None,
    ) -> Answer:
        """``check``: what the event must pass to be accepted (an EventPolicy's filters): its reason, 403."""
        started = time.perf_counter()
        event_type = ""
        try:
            admitted = self._admit(ingress, headers, body, check, started)
            if isinstance(admitted, Answer):
                return admitted
            event, record = admitted
            event_type = event.attributes["type"]
            if ingress.transform is not None:
                answer = await self.transformer.handle(ingress.transform, event)
                return self._count(ingress, event_type, started, answer)
            if ingress.request_reply is not None:
                if self.requests is None:
                    return self._count(
                        ingress, event_type, started, Answer(501, _text("no RequestReply here"))
                    )
                answer = await self.requests.handle(
                    ingress, event, lambda request: self._produce_event(ingress, request, headers)
                )
                return self._count(ingress, event_type, started, answer)
            failure = await self._produce_event(ingress, event, headers, record)
            return self._count(ingress, event_type, started, failure or ACCEPTED)
        except Exception:  # never answer 202 for something that went wrong
            log.exception("unexpected error in the ingress")
            return self._count(ingress, event_type, started, Answer(500, _text("internal error")))

    def _admit(
        self,
        ingress: Ingress,
        headers: dict[str, str],
        body: bytes,
        check: Callable[[Mapping[str, object]], str | None] | None,
        started: float,
    ) -> Answer | tuple[events.Event, Record | None]:
        """The event of the request and its record, or the (counted) answer refusing it."""
        reserved = self.reserved(ingress.topic)
        if reserved is not None:
            log.warning("refused to produce to a reserved topic", extra={"topic": ingress.topic})
            return self._count(ingress, "", started, Answer(403, _text(reserved)))
        if len(body) > self.max_event_bytes:
            return self._count(ingress, "", started, too_large(self.max_event_bytes))
        try:
            event, record = events.from_http_with_record(headers, body)
        except events.UnsupportedMediaType as err:
            return self._count(ingress, "", started, Answer(415, _text(str(err))))
        except events.InvalidEvent as err:
            return self._count(ingress, "", started, Answer(400, _text(f"invalid CloudEvent: {err}")))
        if check is not None:
            refused = check(event.attributes)
            if refused is not None:
                return self._count(ingress, event.attributes["type"], started, Answer(403, _text(refused)))
        return event, record

    async def _produce_event(
        self,
        ingress: Ingress,
        event: events.Event,
        headers: dict[str, str],
        record: Record | None = None,
    ) -> Answer | None:
        """Put ``event`` on the ingress's topic: None once Kafka acknowledged it, else the answer saying why not.

        ``record``: the binary-mode record already made of ``event`` from the request (``from_http_with_record``).
        """
        prepared = self._prepare(ingress, event, headers, record)
        if isinstance(prepared, Answer):
            return prepared
        key, value, record_headers, span = prepared
        failure = await self._store(ingress, event, key, value, record_headers)
        self._stored(ingress, event, span, failure)
        return failure

    def _prepare(
        self, ingress: Ingress, event: events.Event, headers: dict[str, str], record: Record | None
    ) -> Answer | tuple[bytes | None, bytes | None, list[tuple[str, bytes]], Span | None]:
        """The record to produce (key, value, headers) and the event's span, or the answer refusing it (413)."""
        value: bytes | None
        if ingress.content_mode == "structured":
            key_text = event.attributes.get("partitionkey")
            key = key_text.encode() if key_text is not None else None
            record_headers = [("content-type", events.STRUCTURED_JSON.encode())]
            value = events.to_structured_json(event)
        elif record is not None:
            key, record_headers, value = record
        else:
            key, record_headers, value = events.to_kafka_binary(event)
        span = None
        carried = None
        if TRACEPARENT in headers or TRACEPARENT in event.attributes:  # no call when there is none
            carried = trace_context.from_request(headers) or trace_context.from_event(event.attributes)
        if self.tracing is not None and not self.tracing.passes_through(carried):
            span = self._start_span(ingress, event, carried)
            carried = self.tracing.headers(span)
        if carried is not None:
            record_headers.extend(trace_context.record_headers(carried))
        if self.max_record_bytes is not None:
            size = record_bytes(key, value, record_headers)
            if size > self.max_record_bytes:
                message = (
                    f"the event would be a Kafka record of {size} bytes (attributes included), "
                    f"larger than the limit of {self.max_record_bytes} bytes"
                )
                if span is not None:
                    _end_span(span, 413)
                return Answer(413, _text(message))
        return key, value, record_headers, span

    def _stored(
        self, ingress: Ingress, event: events.Event, span: Span | None, failure: Answer | None
    ) -> None:
        if span is not None:
            _end_span(span, (failure or ACCEPTED).status)
        if failure is None and self.on_event is not None:
            self.on_event(ingress, event)

    def _finish(
        self,
        ingress: Ingress,
        event: events.Event,
        span: Span | None,
        failure: Answer | None,
        started: float,
        reply: Callable[[Answer], None],
    ) -> None:
        """The direct path's end: the span, the observer, the metrics and the answer."""
        try:
            self._stored(ingress, event, span, failure)
            answer = failure or ACCEPTED
        except Exception:
            log.exception("unexpected error in the ingress")
            answer = Answer(500, _text("internal error"))
        reply(self._count(ingress, event.attributes["type"], started, answer))

    def _answer_on(
        self,
        acknowledged: Awaitable[object],
        ingress: Ingress,
        event: events.Event,
        key: bytes | None,
        value: bytes | None,
        record_headers: list[tuple[str, bytes]],
        span: Span | None,
        started: float,
        reply: Callable[[Answer], None],
    ) -> None:
        """Answer through ``reply`` once ``acknowledged`` (the record's batch, or the record sent alone) is done."""
        callback = functools.partial(
            self._acknowledged, ingress, event, key, value, record_headers, span, started, reply
        )
        self.future_of(acknowledged).add_done_callback(callback)

    def _acknowledged(
        self,
        ingress: Ingress,
        event: events.Event,
        key: bytes | None,
        value: bytes | None,
        record_headers: list[tuple[str, bytes]],
        span: Span | None,
        started: float,
        reply: Callable[[Answer], None],
        acknowledged: asyncio.Future[object],
    ) -> None:
        """The direct path's callback on the acknowledgement of a record's batch: the answer, through ``reply``."""
        failure: Answer | None = None
        try:
            error = acknowledged.exception()  # CancelledError if cancelled: an internal error below
            if isinstance(error, RetryAlone):
                # Refused with the records it shared a batch with: alone, it may well be stored.
                alone = self.submit_alone(ingress, key, value, record_headers)
                self._answer_on(alone, ingress, event, key, value, record_headers, span, started, reply)
                return
            if error is not None:
                failure = self.failure(ingress, event, error)
        except BaseException as err:  # never answer 202 for something that went wrong
            log.error("unexpected error in the ingress", exc_info=err)
            failure = Answer(500, _text("internal error"))
        self._finish(ingress, event, span, failure, started, reply)

    def failure(self, ingress: Ingress, event: events.Event, err: BaseException) -> Answer:
        """What producing the record raised, as the answer saying why it was not stored; anything else re-raised."""
        if isinstance(err, MessageSizeTooLargeError):
            # Kafka's own limit (the topic's max.message.bytes, or the producer's request size), which may be
            # below the receiver's: say whose limit it was.
            message = (
                f"Kafka refused the event as too large for topic {ingress.topic} "
                f"(its max.message.bytes, or the producer's request limit); nothing was stored"
            )
            return Answer(413, _text(message))
        if isinstance(err, NotConnected):
            return self.unavailable(str(err))
        if isinstance(err, TimeoutError | KafkaError | ConnectionError):
            log.warning(
                "Kafka did not acknowledge the event",
                extra={"topic": ingress.topic, "error": repr(err), "event_id": event.attributes.get("id")},
            )
            message = f"the event could not be stored: Kafka did not acknowledge it ({type(err).__name__})"
            return self.unavailable(message)
        raise err

    async def _store(
        self,
        ingress: Ingress,
        event: events.Event,
        key: bytes | None,
        value: bytes | None,
        record_headers: list[tuple[str, bytes]],
    ) -> Answer | None:
        """Produce the record; None once Kafka acknowledged it, else the answer saying why not."""
        try:
            await self.produce(ingress, key, value, record_headers)
        except Exception as err:
            return self.failure(ingress, event, err)
        return None

    def _start_span(
        self, ingress: Ingress, event: events.Event, carried: trace_context.TraceHeaders | None
    ) -> Span:
        assert self.tracing is not None
        span = self.tracing.start(f"ingress {ingress.namespace}/{ingress.name}", carried, SpanKind.PRODUCER)
        if not span.is_recording():
            return span  # sampled out: nothing more to spend on it
        span.set_attributes(
            {
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": ingress.topic,
                "keventing.ingress": ingress.id,
                "k8s.namespace.name": ingress.namespace,
                "cloudevents.event_id": event.attributes["id"],
                "cloudevents.event_type": event.attributes["type"],
                "cloudevents.event_source": event.attributes["source"],
            }
        )
        return span

    def unavailable(self, message: str) -> Answer:
        """503 with Retry-After: a state the client should wait out (starting, Kafka away)."""
        return Answer(503, _text(message), (("retry-after", self.retry_after),))

    def _count(self, ingress: Ingress, event_type: str, started: float, answer: Answer) -> Answer:
        if not self.event_type_label:
            event_type = ""
        key = (ingress.namespace, ingress.name, event_type, answer.status)
        children = self._metrics.get(key)
        if children is None:
            # Looking labelled children up costs more than updating them: once per label set, not per event.
            code = answer.status
            labels = (ingress.namespace, ingress.name, event_type, str(code), f"{code // 100}xx", "")
            children = self._metrics[key] = (
                self.metrics.event_count.labels(*labels),
                self.metrics.event_dispatch_latencies.labels(*labels),
            )
        children[0].inc()
        children[1].observe((time.perf_counter() - started) * 1000)
        return answer


def _end_span(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(StatusCode.ERROR)
    span.end()


def too_large(limit: int) -> Answer:
    return Answer(413, _text(f"the event is larger than the limit of {limit} bytes"))


def body_timed_out(timeout: float) -> Answer:
    """408: the body did not arrive in time; the connection is closed after it."""
    return Answer(408, _text(f"the request body did not arrive within {timeout:g} seconds"))


def _text(message: str) -> bytes:
    return message.encode() + b"\n"
