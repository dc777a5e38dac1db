"""Retry schedules: Knative's Kafka-broker backoff and HTTP Retry-After."""

from __future__ import annotations

import email.utils
import time

# No single wait is longer than a day, whatever a stored DeliverySpec says (validation bounds new ones):
# delay·2ⁿ overflows a float past n = 1023 and an event-loop timer well before.
MAX_WAIT_SECONDS = 24 * 3600.0


def backoff_seconds(policy: str, delay: float, retry: int) -> float:
    """Wait before the ``retry``-th retry (1, 2, …): linear d·n, exponential d·2ⁿ, at most a day."""
    if policy == "linear":
        return min(delay * retry, MAX_WAIT_SECONDS)
    # 2**64 seconds is already beyond any cap: a larger exponent only risks OverflowError.
    return min(delay * 2.0 ** min(retry, 64), MAX_WAIT_SECONDS)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP-date. None when absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
