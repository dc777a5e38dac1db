"""One delivery attempt of an event over HTTP: the binary-mode POST, what its answer means (success, reply,
retryable failure), the wait before the next attempt, and the dead-letter extensions of a failure."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from dispatcher.backoff import backoff_seconds, retry_after_seconds
from dispatcher.transport import Post, TransportError
from keventing import events
from keventing.contract import DeliveryPolicy
from keventing.tracing import TraceHeaders

RETRYABLE_4XX = frozenset({404, 408, 409, 429})
RETRY_AFTER_CODES = frozenset({429, 503})
TRANSPORT_ERROR_CODE = 500
MAX_ERROR_DATA = 1024
_NOT_EXTENSION_CHAR = re.compile(r"[^a-z0-9]")


@dataclass
class Attempt:
    """The outcome of one HTTP request."""

    status: int  # 0 for a transport error or timeout
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased
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


async def send_event(
    post: Post,
    url: str,
    event: events.Event,
    timeout: float | None,
    prefer_reply: bool,
    structured: bool = False,
    trace: TraceHeaders | None = None,
    ca_certs: str | None = None,
    audience: str | None = None,
) -> Attempt:
    """POST ``event`` in binary mode, or ``structured`` (the JSON event format: DeliverySpec ``format:
    json``); with ``prefer_reply`` a 2xx carrying an event is read as the reply. ``trace``: the
    traceparent/tracestate headers to send; ``ca_certs`` and ``audience``: the Destination's."""
    if structured:
        headers, body = {"content-type": events.STRUCTURED_JSON}, events.to_structured_json(event)
    else:
        headers, body = events.to_http_binary(event)
    if prefer_reply:
        headers["prefer"] = "reply"
    if trace is not None:
        headers.update(trace)
    try:
        response = await post.post(url, headers, body, timeout, ca_certs, audience)
    except TransportError as err:
        return Attempt(0, error=str(err))
    attempt = Attempt(response.status, response.body, response.headers)
    # A reply is a 2xx other than 202 carrying an event: a body, or binary-mode headers with no data.
    has_reply = response.body or "ce-specversion" in attempt.headers
    if attempt.ok and prefer_reply and attempt.status != 202 and has_reply:
        try:
            attempt.reply = events.from_http(attempt.headers, response.body)
        except events.InvalidEvent as err:
            # A non-empty 2xx body that is not a CloudEvent is a failed delivery (Knative data-plane spec).
            attempt.error = f"response body is not a CloudEvent: {err}"
    return attempt


def retry_wait(policy: DeliveryPolicy, retry: int, attempt: Attempt) -> float:
    """Seconds before the ``retry``-th retry: the backoff (at most ``backoffMax``), or a longer Retry-After
    up to ``retryAfterMax``."""
    wait = backoff_seconds(policy.backoff_policy, policy.backoff_delay, retry)
    if policy.backoff_max is not None:
        wait = min(wait, policy.backoff_max)
    if policy.retry_after_max is not None and attempt.status in RETRY_AFTER_CODES:
        after = retry_after_seconds(attempt.headers.get("retry-after"))
        if after is not None:
            wait = max(wait, min(after, policy.retry_after_max))
    return wait


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
