"""Sending a source's event to its sink: a binary-mode POST, retried a few times like Knative's adapters."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from keventing import events
from keventing.contract import Source
from keventing.metrics import MetricSet

log = logging.getLogger("keventing.sources")

# Knative's PingSource adapter: 5 retries, exponential backoff from 50 ms, so that it is over well within
# the shortest schedule interval (a minute).
RETRIES = 5
FIRST_BACKOFF = 0.05
TIMEOUT = 10.0
RETRYABLE = frozenset({404, 408, 409, 429})


class SourceMetrics(MetricSet):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.event_count = Counter(
            "keventing_source_events_total",
            "Events a source sent to its sink",
            ["namespace_name", "source_kind", "source_name", "response_code_class"],
            registry=registry,
        )


class EventSender:
    def __init__(self, session: aiohttp.ClientSession, metrics: SourceMetrics | None = None) -> None:
        self.session = session
        self.metrics = metrics or SourceMetrics.of()

    async def send(self, source: Source, event: events.Event) -> bool:
        """POST ``event`` to the source's sink; False when every attempt failed (the event is lost)."""
        headers, body = events.to_http_binary(event)
        outcome = "transport_error"
        for attempt in range(RETRIES + 1):
            if attempt:
                await asyncio.sleep(FIRST_BACKOFF * 2 ** (attempt - 1))
            try:
                async with self.session.post(
                    source.sink, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=TIMEOUT)
                ) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as err:
                outcome = "transport_error"
                log.debug("sending failed", extra={"source": source.id, "error": repr(err)})
                continue
            outcome = f"{status // 100}xx"
            if 200 <= status < 300:
                self.metrics.event_count.labels(source.namespace, source.kind, source.name, outcome).inc()
                return True
            if status < 500 and status not in RETRYABLE:
                break
        self.metrics.event_count.labels(source.namespace, source.kind, source.name, outcome).inc()
        log.warning(
            "event lost: the sink did not accept it",
            extra={"source": source.id, "sink": source.sink, "event_id": event.id, "outcome": outcome},
        )
        return False
