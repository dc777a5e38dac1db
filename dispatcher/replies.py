"""Publishing to an egress's reply target: a subscriber's reply, or the event a subscription without
subscriber forwards. To the Broker's topic (Kafka binary mode) or to a URL (HTTP binary mode); discard is nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from dispatcher.delivery import send_event
from dispatcher.transport import Post
from keventing import events
from keventing.contract import Reply
from keventing.tracing import TraceHeaders, record_headers

# produce(topic, key, headers, value): sends one record and returns once Kafka acknowledged it.
Produce = Callable[[str, bytes | None, events.KafkaHeaders, bytes | None], Awaitable[None]]


class ReplyFailed(Exception):
    """The reply target did not take the event."""


class ReplyPublisher:
    def __init__(
        self,
        produce: Produce,
        post: Post,
        on_topic_reply: Callable[[str, events.Event], None] | None = None,
    ) -> None:
        self.produce = produce
        self.post = post
        self.on_topic_reply = on_topic_reply  # e.g. the EventType registry: no ingress sees these

    async def publish(self, reply: Reply, event: events.Event, trace: TraceHeaders | None = None) -> None:
        """Raises when the target did not take it (Kafka errors, ReplyFailed): the caller retries the delivery.
        ``trace``: the trace context the record or request carries."""
        if reply.strategy == "topic":
            assert reply.topic is not None
            key, headers, value = events.to_kafka_binary(event)
            if trace is not None:
                headers.extend(record_headers(trace))
            await self.produce(reply.topic, key, headers, value)
            if self.on_topic_reply is not None:
                self.on_topic_reply(reply.topic, event)
        elif reply.strategy == "url":
            assert reply.url is not None
            # No timeout of its own: the transport's default applies, as for any reply.
            attempt = await send_event(
                self.post,
                reply.url,
                event,
                None,
                prefer_reply=False,
                trace=trace,
                ca_certs=reply.ca_certs,
                audience=reply.audience,
            )
            if attempt.status == 0:
                raise ReplyFailed(f"reply target {reply.url} unreachable: {attempt.error}")
            if not attempt.ok:
                raise ReplyFailed(f"reply target {reply.url} answered {attempt.status}")
