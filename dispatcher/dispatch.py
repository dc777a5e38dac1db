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
from typing import Literal

from aiokafka import ConsumerRecord

from dispatcher.decode import record_selector
from dispatcher.delivery import Attempt, error_extensions, retry_wait, send_event
from dispatcher.metrics import EgressMetrics
from dispatcher.replies import ReplyPublisher
from dispatcher.transport import Post
from keventing import events
from keventing.contract import Egress
from keventing.filters import compile_trigger_filter

log = logging.getLogger("keventing.dispatcher")

Sleep = Callable[[float], Awaitable[None]]
OnFailure = Callable[[int], Awaitable[None]]


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
    ) -> None:
        self.egress = egress
        self.post = post
        self.replies = replies
        self.metrics = metrics
        self.timeout = egress.delivery.timeout or default_timeout
        self.structured = egress.delivery.format == "json"
        self.sleep = sleep
        self.clock = clock  # dispatch latency
        self.wall_clock = wall_clock  # processing latency, from the record's timestamp
        self._select = record_selector(
            egress, compile_trigger_filter(egress.filter.attributes, egress.filter.filters)
        )

    def select(self, record: ConsumerRecord) -> events.Event | None:
        """The record's event when the egress is to deliver it; None when it needs no delivery."""
        try:
            event = self._select(record)
        except Exception as err:  # an undecodable record cannot be delivered; it must not block the partition
            log.warning("skipping undecodable record", extra={"egress": self.egress.id, "error": repr(err)})
            event = None
        if event is None:
            self.metrics.filtered.inc()
            return None
        return event

    async def dispatch(
        self, event: events.Event, failed: int = 0, on_failure: OnFailure | None = None
    ) -> Outcome:
        """Deliver, else dead-letter, else give up. Never raises but for cancellation.

        ``failed`` attempts were made already, before a restart or a rebalance; ``on_failure(n)`` is
        awaited after the n-th failed attempt, before the next one (the consumer persists ``n`` with its
        committed offset there, so that a new owner resumes the count)."""
        try:
            return await self._dispatch(event, failed, on_failure)
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

    async def _dispatch(self, event: events.Event, failed: int, on_failure: OnFailure | None) -> Outcome:
        started = self.clock()
        send = lambda: self._deliver_once(event)  # noqa: E731
        if failed > self.egress.delivery.retry:  # every attempt was made before a restart
            attempts = failed
            last = Attempt(0, error=f"all {failed} attempts failed before the dispatcher restarted")
        elif failed:
            attempts, last = await self._retrying(send, True, made=failed, on_failure=on_failure)
        else:
            last = await self._deliver_once(event)
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
        send: Callable[[], Awaitable[Attempt]],
        count_retries: bool,
        made: int = 0,
        last: Attempt | None = None,
        on_failure: OnFailure | None = None,
    ) -> tuple[int, Attempt]:
        """Send until success, a failure not worth retrying, or the policy's attempts are used up (retry + 1
        in all). ``made`` attempts were made before; ``last`` is the outcome of the latest of them when it
        was made here. Answers the attempts made in all and the last outcome."""
        policy = self.egress.delivery
        attempt = last
        while True:
            if attempt is None:
                attempt = await send()
                made += 1
            if attempt.ok:
                return made, attempt
            if on_failure is not None:
                await on_failure(made)
            if not attempt.retryable or made > policy.retry:
                return made, attempt
            if count_retries:
                self.metrics.retries.inc()
            await self.sleep(retry_wait(policy, made, attempt))
            attempt = None

    async def _deliver_once(self, event: events.Event) -> Attempt:
        egress = self.egress
        if egress.destination is None:
            # A subscription without subscriber forwards events to its reply target.
            try:
                await self.replies.publish(egress.reply, event)
            except Exception as err:
                return Attempt(0, error=f"event could not be forwarded: {err!r}")
            return Attempt(202)
        attempt = await send_event(
            self.post, egress.destination, event, self.timeout, egress.prefer_reply, self.structured
        )
        if not attempt.ok:
            return attempt
        if attempt.reply is not None and egress.reply.strategy != "discard":
            try:
                await self.replies.publish(egress.reply, attempt.reply)
            except Exception as err:  # the reply is part of the delivery: retry the whole of it
                return Attempt(0, error=f"reply could not be forwarded: {err!r}")
            self.metrics.replied().inc()
        return attempt

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
        _, attempt = await self._retrying(
            lambda: send_event(
                self.post, url, letter, self.timeout, prefer_reply=False, structured=self.structured
            ),
            count_retries=False,
        )
        if attempt.ok:
            self.metrics.dead_lettered().inc()
            return Outcome("dead_lettered", attempts, failed)
        log.error(
            "dead-letter sink refused the event; giving up on it",
            extra={"egress": egress.id, "event_id": event.attributes.get("id"), "code": attempt.code},
        )
        self.metrics.dropped("dead_letter_sink_failed").inc()
        return Outcome("dropped", attempts, failed, "dead_letter_sink_failed")
