"""The trip of one event of an egress, as Knative's RecordDispatcher makes it: select it (decode, filter),
send it to the subscriber with retries, publish the reply, dead-letter it when retries are exhausted, or
give up on it — and count each step. HTTP goes through the ``Post`` seam, Kafka through the reply publisher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, cast

from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode

from dispatcher.decode import Accepts, record_selector
from dispatcher.delivery import Attempt, error_extensions, retry_wait, send_event
from dispatcher.metrics import EgressMetrics
from dispatcher.replies import ReplyPublisher
from dispatcher.transport import Post
from keventing import events
from keventing import tracing as trace_context
from keventing.contract import Egress
from keventing.filters import compile_trigger_filter
from keventing.tracing import TraceHeaders, Tracing

log = logging.getLogger("keventing.dispatcher")

Sleep = Callable[[float], Awaitable[None]]
# on_failure(n, due): after the n-th failed attempt; due is the wall-clock time of the next one (None: none).
OnFailure = Callable[[int, float | None], Awaitable[None]]
# A resumed retry waits at most this long for the time its previous owner set (the bound on a backoff).
MAX_RESUMED_WAIT = 86_400.0


@dataclass(frozen=True)
class Outcome:
    """How the dispatch of one event ended; ``reason`` says why it was dropped."""

    result: Literal["delivered", "dead_lettered", "dropped"]
    attempts: int
    last: Attempt
    reason: str | None = None


class RecordDispatcher:
    def __init__(
        self,
        egress: Egress,
        post: Post,
        replies: ReplyPublisher,
        metrics: EgressMetrics,
        default_timeout: float,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
        tracing: Tracing | None = None,
    ) -> None:
        self.egress = egress
        self.tracing = tracing  # None: off, only a sender's trace context is carried through
        self.post = post
        self.replies = replies
        self.metrics = metrics
        self.timeout = egress.delivery.timeout or default_timeout
        self.structured = egress.delivery.format == "json"
        self.sleep = sleep
        self.clock = clock  # dispatch latency
        self.wall_clock = wall_clock  # processing latency, from the record's timestamp
        accepts = compile_trigger_filter(egress.filter.attributes, egress.filter.filters)
        self._select = record_selector(egress, accepts)
        # The filter alone, for a shared fetch that selects binary-mode records on attributes it decoded once
        # for every Trigger; None where selecting takes more (a KafkaSource's mapping, tracing's filter spans).
        self.accepts: Accepts | None = accepts if tracing is None and egress.kind != "KafkaSource" else None
        if tracing is None:
            self.select = self._select_untraced  # type: ignore[method-assign]  # one call less per record

    def select(self, record: ConsumerRecord) -> events.Event | None:
        """The record's event when the egress is to deliver it; None when it needs no delivery."""
        if self.tracing is not None:
            return self._select_traced(self.tracing, record)
        return self._select_untraced(record)

    def _select_untraced(self, record: ConsumerRecord) -> events.Event | None:
        received = self.clock()
        try:
            event = self._select(record)
        except Exception as err:  # an undecodable record cannot be delivered; it must not block the partition
            log.warning("skipping undecodable record", extra={"egress": self.egress.id, "error": repr(err)})
            event = None
        if event is None:
            self.metrics.filtered.inc()
            return None
        event.meta["received"] = received  # kn_eventing_process_duration_seconds ends where delivery starts
        return event

    def _select_traced(self, tracing: Tracing, record: ConsumerRecord) -> events.Event | None:
        """The filter decision as a span; the event's deliveries become its children (``meta["span"]``)."""
        carried = trace_context.from_record(record.headers or ())
        if tracing.passes_through(carried):
            return self._select_untraced(record)
        egress = self.egress
        attributes = {
            "keventing.egress": egress.id,
            "k8s.namespace.name": egress.namespace,
            "messaging.destination.name": record.topic,
            "messaging.kafka.offset": record.offset,
            "messaging.destination.partition.id": str(record.partition),
        }
        span = tracing.start(
            f"filter {egress.kind} {egress.namespace}/{egress.name}", carried, SpanKind.CONSUMER, attributes
        )
        try:
            event = self._select_untraced(record)
            span.set_attribute("keventing.filter.matched", event is not None)
            if event is not None:
                span.set_attribute("cloudevents.event_id", event.attributes.get("id", ""))
                span.set_attribute("cloudevents.event_type", event.attributes.get("type", ""))
                if span.is_recording():
                    event.meta["span"] = trace.set_span_in_context(span)
                elif carried is None:  # a new trace, sampled out: passed on as such, not decided again
                    event.meta["trace"] = tracing.headers(span)
        finally:
            span.end()
        return event

    async def dispatch(
        self,
        event: events.Event,
        failed: int = 0,
        on_failure: OnFailure | None = None,
        due: float | None = None,
    ) -> Outcome:
        """Deliver, else dead-letter, else give up. Never raises but for cancellation.

        ``failed`` attempts were made already, before a restart or a rebalance, and the next was ``due``
        then (wall-clock seconds); ``on_failure(n, due)`` is awaited after the n-th failed attempt, before
        the next one (the consumer persists both with its committed offset there, so that a new owner
        resumes the count and the schedule)."""
        try:
            return await self._dispatch(event, failed, on_failure, due)
        except Exception as err:
            # A bug must not block the partition forever, nor lose the event silently: it goes to the
            # dead-letter sink like an undeliverable one, else it is counted and logged (with its id) as dropped.
            log.exception(
                "delivery crashed", extra={"egress": self.egress.id, "event_id": event.attributes.get("id")}
            )
            crash = Attempt(0, error=f"internal error: {type(err).__name__}: {err}")
        if self.egress.delivery.dead_letter_url is not None:
            try:
                outcome = await self._give_up(event, 1, crash)
                if outcome.result == "dead_lettered":
                    return outcome
            except Exception:
                log.exception("dead-lettering a crashed delivery failed", extra={"egress": self.egress.id})
        self.metrics.dropped("internal_error").inc()
        return Outcome("dropped", 0, crash, "internal_error")

    async def _dispatch(
        self, event: events.Event, failed: int, on_failure: OnFailure | None, due: float | None
    ) -> Outcome:
        started = self.clock()
        received = event.meta.get("received")
        if isinstance(received, float):
            self.metrics.process.observe(max(0.0, started - received))
        send = lambda retry: self._deliver_once(event, retry)  # noqa: E731
        if failed > self.egress.delivery.retry:  # every attempt was made before a restart
            attempts = failed
            last = Attempt(0, error=f"all {failed} attempts failed before the dispatcher restarted")
        elif failed:
            if due is not None:  # the backoff the previous owner was waiting out
                await self.sleep(min(MAX_RESUMED_WAIT, max(0.0, due - self.wall_clock())))
            attempts, last = await self._retrying(send, True, made=failed, on_failure=on_failure)
        else:
            last = await self._deliver_once(event, 0)
            attempts = 1
            if not last.ok:  # the common case skips this
                attempts, last = await self._retrying(send, True, 1, last, on_failure)
        count, latency = self.metrics.by_code(last.code)
        count.inc()
        latency.observe((self.clock() - started) * 1000)
        if last.ok:
            outcome = Outcome("delivered", attempts, last)
        else:
            log.info(
                "delivery failed",
                extra={
                    "egress": self.egress.id,
                    "event_id": event.attributes.get("id"),
                    "code": last.code,
                    "attempts": attempts,
                    "error": last.error,
                },
            )
            outcome = await self._give_up(event, attempts, last)
        timestamp = event.meta.get("timestamp")
        if isinstance(timestamp, int) and timestamp > 0:
            self.metrics.processing.observe(max(0, self.wall_clock() * 1000 - timestamp))
        return outcome

    async def _retrying(
        self,
        send: Callable[[int], Awaitable[Attempt]],
        count_retries: bool,
        made: int = 0,
        last: Attempt | None = None,
        on_failure: OnFailure | None = None,
    ) -> tuple[int, Attempt]:
        """Send until success, a failure not worth retrying, or the policy's attempts are used up (retry + 1
        in all). ``made`` attempts were made before; ``last`` is the outcome of the latest of them when it
        was made here. ``send(n)`` makes the attempt after ``n`` (its retry number). Answers the attempts
        made in all and the last outcome."""
        policy = self.egress.delivery
        attempt = last
        while True:
            if attempt is None:
                attempt = await send(made)
                made += 1
            if attempt.ok:
                return made, attempt
            retrying = attempt.retryable and made <= policy.retry
            wait = retry_wait(policy, made, attempt) if retrying else 0.0
            if on_failure is not None:
                await on_failure(made, self.wall_clock() + wait if retrying else None)
            if not retrying:
                return made, attempt
            if count_retries:
                self.metrics.retries.inc()
            await self.sleep(wait)
            attempt = None

    async def _deliver_once(self, event: events.Event, retry: int) -> Attempt:
        egress = self.egress
        parent = event.meta.get("span")  # set only when tracing is on and the event is sampled
        if parent is not None:
            return await self._deliver_traced(event, retry, parent)
        trace: TraceHeaders | None = event.meta.get("trace")  # type: ignore[assignment]
        if egress.destination is None:
            return await self._forward(event, trace)
        attempt = await send_event(
            self.post,
            egress.destination,
            event,
            self.timeout,
            egress.prefer_reply,
            self.structured,
            trace,  # type: ignore[arg-type]
            egress.destination_ca_certs,
            egress.destination_audience,
        )
        if attempt.ok and attempt.reply is not None and egress.reply.strategy != "discard":
            return await self._reply(attempt, trace)
        return attempt

    async def _forward(self, event: events.Event, trace: TraceHeaders | None) -> Attempt:
        """A subscription without subscriber forwards events to its reply target."""
        try:
            await self.replies.publish(self.egress.reply, event, trace)
        except Exception as err:
            return Attempt(0, error=f"event could not be forwarded: {err!r}")
        return Attempt(202)

    async def _reply(self, attempt: Attempt, trace: TraceHeaders | None) -> Attempt:
        assert attempt.reply is not None
        try:
            await self.replies.publish(self.egress.reply, attempt.reply, trace)
        except Exception as err:  # the reply is part of the delivery: retry the whole of it
            return Attempt(0, error=f"reply could not be forwarded: {err!r}")
        self.metrics.replied().inc()
        return attempt

    async def _deliver_traced(self, event: events.Event, retry: int, parent: object) -> Attempt:
        """One attempt as a span (its retry number and status code), the reply published as its child."""
        assert self.tracing is not None and isinstance(parent, Context)
        tracing, egress = self.tracing, self.egress
        attributes: dict[str, str | int] = {"keventing.egress": egress.id, "keventing.retry": retry}
        if egress.destination is None:
            span = tracing.start("reply", parent, SpanKind.PRODUCER, {**attributes, **self._reply_target()})
            attempt = await self._forward(event, tracing.headers(span))
            return _ended(span, attempt)
        span = tracing.start(
            "delivery", parent, SpanKind.CLIENT, {**attributes, "url.full": egress.destination}
        )
        try:
            attempt = await send_event(
                self.post,
                egress.destination,
                event,
                self.timeout,
                egress.prefer_reply,
                self.structured,
                tracing.headers(span),
                egress.destination_ca_certs,
                egress.destination_audience,
            )
            if attempt.ok and attempt.reply is not None and egress.reply.strategy != "discard":
                reply_attributes = {
                    "keventing.egress": egress.id,
                    "cloudevents.event_id": attempt.reply.attributes.get("id", ""),
                    "cloudevents.event_type": attempt.reply.attributes.get("type", ""),
                    **self._reply_target(),
                }
                reply_span = tracing.start(
                    "reply", trace.set_span_in_context(span), SpanKind.PRODUCER, reply_attributes
                )
                attempt = _ended(reply_span, await self._reply(attempt, tracing.headers(reply_span)))
        except BaseException:
            span.end()
            raise
        return _ended(span, attempt)

    def _reply_target(self) -> dict[str, str]:
        reply = self.egress.reply
        if reply.strategy == "topic" and reply.topic is not None:
            return {"messaging.system": "kafka", "messaging.destination.name": reply.topic}
        return {"url.full": reply.url or ""}

    async def _give_up(self, event: events.Event, attempts: int, failed: Attempt) -> Outcome:
        egress = self.egress
        url = egress.delivery.dead_letter_url
        if url is None:
            self.metrics.dropped("no_dead_letter_sink").inc()
            log.warning(
                "dropping event: delivery failed and there is no dead-letter sink",
                extra={"egress": egress.id, "event_id": event.attributes.get("id"), "code": failed.code},
            )
            return Outcome("dropped", attempts, failed, "no_dead_letter_sink")
        failed_url = egress.destination or egress.reply.url or ""
        letter = event.with_extensions(error_extensions(failed, failed_url))
        parent = event.meta.get("span")
        span = None
        trace_headers: TraceHeaders | None
        if self.tracing is not None and isinstance(parent, Context):
            attributes = {"keventing.egress": egress.id, "url.full": url, "knativeerrorcode": failed.code}
            span = self.tracing.start("dead letter", parent, SpanKind.CLIENT, attributes)
            trace_headers = self.tracing.headers(span)
        else:
            trace_headers = cast("TraceHeaders | None", event.meta.get("trace"))
        try:
            _, attempt = await self._retrying(
                lambda _: send_event(
                    self.post,
                    url,
                    letter,
                    self.timeout,
                    prefer_reply=False,
                    structured=self.structured,
                    trace=trace_headers,
                    ca_certs=egress.delivery.dead_letter_ca_certs,
                    audience=egress.delivery.dead_letter_audience,
                ),
                count_retries=False,
            )
        except BaseException:
            if span is not None:
                span.end()
            raise
        if span is not None:
            _ended(span, attempt)
        if attempt.ok:
            self.metrics.dead_lettered().inc()
            return Outcome("dead_lettered", attempts, failed)
        log.error(
            "dead-letter sink refused the event; giving up on it",
            extra={"egress": egress.id, "event_id": event.attributes.get("id"), "code": attempt.code},
        )
        self.metrics.dropped("dead_letter_sink_failed").inc()
        return Outcome("dropped", attempts, failed, "dead_letter_sink_failed")


def _ended(span: Span, attempt: Attempt) -> Attempt:
    """End ``span`` with the attempt's outcome: its status code, an error status when it failed."""
    span.set_attribute("http.response.status_code", attempt.code)
    if not attempt.ok:
        span.set_status(StatusCode.ERROR, attempt.error or f"answered {attempt.status}")
    span.end()
    return attempt
