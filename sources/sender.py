"""Sending a source's event to its sink: a binary-mode POST, retried a few times like Knative's adapters;
an https sink's certificate verified (the system's CAs, the trust bundle, the sink's CACerts), an OIDC token
for the sink's audience when it has one."""

from __future__ import annotations

import asyncio
import logging
import ssl

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from keventing import events
from keventing.contract import Source
from keventing.metrics import MetricSet
from keventing.tls import ClientTrust, TrustUnusable
from keventing.tokens import TokenSource, TokenUnavailable

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
    def __init__(
        self,
        session: aiohttp.ClientSession,
        metrics: SourceMetrics | None = None,
        trust: ClientTrust | None = None,
        tokens: TokenSource | None = None,
    ) -> None:
        self.session = session
        self.metrics = metrics or SourceMetrics.of()
        self.trust = trust or ClientTrust()
        self.tokens = tokens

    async def send(self, source: Source, event: events.Event) -> bool:
        """POST ``event`` to the source's sink; False when every attempt failed (the event is lost)."""
        headers, body = events.to_http_binary(event)
        outcome = "transport_error"
        for attempt in range(RETRIES + 1):
            if attempt:
                await asyncio.sleep(FIRST_BACKOFF * 2 ** (attempt - 1))
            try:
                sent, context = await self._request(source, headers)
                timeout = aiohttp.ClientTimeout(total=TIMEOUT)
                async with self.session.post(
                    source.sink, data=body, headers=sent, timeout=timeout, ssl=context
                ) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError, TrustUnusable, TokenUnavailable) as err:
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

    async def _request(
        self, source: Source, headers: dict[str, str]
    ) -> tuple[dict[str, str], ssl.SSLContext | bool]:
        """The headers (with the sink audience's token) and the TLS context (an https sink's) to send with."""
        context: ssl.SSLContext | bool = True
        if source.sink[:6].lower() == "https:":
            context = self.trust.context(source.sink_ca_certs)
        if source.sink_audience is not None and self.tokens is not None:
            token = await self.tokens.token(source.sink_audience, source.identity)
            headers = {**headers, "authorization": f"Bearer {token}"}
        return headers, context
