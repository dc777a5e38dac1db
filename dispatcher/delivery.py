"""Delivering one event to its destination: binary-mode POST, retries with backoff, Retry-After,
replies, and the dead-letter sink. Kafka and offsets are none of this module's business."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from dispatcher.backoff import backoff_seconds, retry_after_seconds
from keventing import events
from keventing.contract import DeliveryPolicy, Egress

log = logging.getLogger("keventing.dispatcher")

RETRYABLE_4XX = frozenset({404, 408, 409, 429})
RETRY_AFTER_CODES = frozenset({429, 503})
TRANSPORT_ERROR_CODE = 500
MAX_ERROR_DATA = 1024
_NOT_EXTENSION_CHAR = re.compile(r"[^a-z0-9]")

PublishReply = Callable[[Egress, events.Event], Awaitable[None]]


@dataclass
class Attempt:
    """The outcome of one HTTP request."""

    status: int  # 0 for a transport error or timeout
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    reply: events.Event | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.error is None

    @property
    def code(self) -> int:
        return self.status or TRANSPORT_ERROR_CODE

    @property
    def retryable(self) -> bool:
        if self.status == 0:
            return True
        return self.status >= 500 or self.status in RETRYABLE_4XX


@dataclass
class Outcome:
    delivered: bool
    attempts: int
    last: Attempt
    dead_lettered: bool = False


class Deliverer:
    def __init__(
        self, session: aiohttp.ClientSession, publish_reply: PublishReply, default_timeout: float
    ) -> None:
        self.session = session
        self.publish_reply = publish_reply
        self.default_timeout = default_timeout
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def deliver(
        self, egress: Egress, event: events.Event, on_retry: Callable[[], None] | None = None
    ) -> Outcome:
        """Deliver ``event`` to the egress destination (or straight to its reply target), retrying per policy."""
        policy = egress.delivery
        if egress.destination is None:
            send = self._forward_only
        else:
            send = self._deliver_once
        retries = 0
        while True:
            attempt = await send(egress, event)
            if attempt.ok:
                return Outcome(True, retries + 1, attempt)
            if not attempt.retryable or retries >= policy.retry:
                break
            retries += 1
            if on_retry is not None:
                on_retry()
            await asyncio.sleep(self._wait(policy, retries, attempt))
        log.info(
            "delivery failed",
            extra={
                "egress": egress.id,
                "event_id": event.attributes.get("id"),
                "code": attempt.code,
                "attempts": retries + 1,
                "error": attempt.error,
            },
        )
        return Outcome(False, retries + 1, attempt)

    async def dead_letter(
        self, egress: Egress, event: events.Event, failed: Attempt, failed_url: str
    ) -> bool:
        """Send the original event with knativeerror* extensions to the dead-letter sink, retrying per policy."""
        url = egress.delivery.dead_letter_url
        assert url is not None
        letter = event.with_extensions(error_extensions(failed, failed_url))
        retries = 0
        while True:
            attempt = await self._post(url, letter, egress.delivery, prefer_reply=False)
            if attempt.ok:
                return True
            if not attempt.retryable or retries >= egress.delivery.retry:
                log.error(
                    "dead-letter sink refused the event; giving up on it",
                    extra={"egress": egress.id, "event_id": event.attributes.get("id"), "code": attempt.code},
                )
                return False
            retries += 1
            await asyncio.sleep(self._wait(egress.delivery, retries, attempt))

    @staticmethod
    def _wait(policy: DeliveryPolicy, retry: int, attempt: Attempt) -> float:
        wait = backoff_seconds(policy.backoff_policy, policy.backoff_delay, retry)
        if policy.retry_after_max is not None and attempt.status in RETRY_AFTER_CODES:
            after = retry_after_seconds(attempt.headers.get("retry-after"))
            if after is not None:
                wait = max(wait, min(after, policy.retry_after_max))
        return wait

    async def _deliver_once(self, egress: Egress, event: events.Event) -> Attempt:
        assert egress.destination is not None
        attempt = await self._post(
            egress.destination, event, egress.delivery, prefer_reply=egress.prefer_reply
        )
        if not attempt.ok:
            return attempt
        if attempt.reply is not None and egress.reply.strategy != "discard":
            try:
                await self.publish_reply(egress, attempt.reply)
            except Exception as err:  # the reply is part of the delivery: retry the whole of it
                return Attempt(0, error=f"reply could not be forwarded: {err!r}")
        return attempt

    async def _forward_only(self, egress: Egress, event: events.Event) -> Attempt:
        """A subscription without subscriber forwards events to its reply target."""
        try:
            await self.publish_reply(egress, event)
        except Exception as err:
            return Attempt(0, error=f"event could not be forwarded: {err!r}")
        return Attempt(202)

    async def _post(
        self, url: str, event: events.Event, policy: DeliveryPolicy, prefer_reply: bool
    ) -> Attempt:
        headers, body = events.to_http_binary(event)
        if prefer_reply:
            headers["prefer"] = "reply"
        timeout = self._timeout(policy.timeout or self.default_timeout)
        try:
            async with self.session.post(url, data=body, headers=headers, timeout=timeout) as response:
                payload = await response.read()
                response_headers = {k.lower(): v for k, v in response.headers.items()}
                attempt = Attempt(response.status, payload, response_headers)
        except TimeoutError:
            return Attempt(0, error=f"no response within {policy.timeout or self.default_timeout} s")
        except aiohttp.ClientError as err:
            return Attempt(0, error=f"{type(err).__name__}: {err}")
        # A reply is a 2xx other than 202 carrying an event: a body, or binary-mode headers with no data.
        has_reply = payload or "ce-specversion" in response_headers
        if attempt.ok and prefer_reply and attempt.status != 202 and has_reply:
            try:
                attempt.reply = events.from_http(response_headers, payload)
            except events.InvalidEvent as err:
                # A non-empty 2xx body that is not a CloudEvent is a failed delivery (Knative data-plane spec).
                attempt.error = f"response body is not a CloudEvent: {err}"
        return attempt


def error_extensions(failed: Attempt, failed_url: str) -> dict[str, str]:
    """The knativeerror* extensions, plus every kne-* response header without its prefix."""
    extensions = {"knativeerrordest": failed_url, "knativeerrorcode": str(failed.code)}
    data = failed.body if failed.body else (failed.error or "").encode()
    if data:
        # Base64 of at most 768 bytes is at most 1024 characters.
        extensions["knativeerrordata"] = base64.b64encode(data[: MAX_ERROR_DATA * 3 // 4]).decode()
    for name, value in failed.headers.items():
        if name.startswith("kne-"):
            extension = _NOT_EXTENSION_CHAR.sub("", name[4:])
            if extension:
                extensions[extension] = value
    return extensions
