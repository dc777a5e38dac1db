"""Retry schedules: Knative's Kafka-broker backoff and HTTP Retry-After."""

from __future__ import annotations

import email.utils
import time


def backoff_seconds(policy: str, delay: float, retry: int) -> float:
    """Wait before the ``retry``-th retry (1, 2, …): linear d·n, exponential d·2ⁿ."""
    if policy == "linear":
        return delay * retry
    return delay * (2**retry)


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
