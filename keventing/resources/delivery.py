"""DeliverySpec: retries, backoff, timeout, Retry-After and the dead-letter sink."""

from __future__ import annotations

from typing import Literal

from keventing.durations import parse_duration
from keventing.resources.base import Destination, Model, ResourceInvalid

# Knative bounds neither. While an event is retried its partition's later events wait (ordered delivery),
# so more than 100 retries is never a useful schedule; the bound also keeps 2**retry finite.
MAX_RETRY = 100
# One day: longer than any delay or timeout a subscriber could want, short of a value that overflows a timer.
MAX_DURATION_SECONDS = 24 * 3600.0


class DeliverySpec(Model):
    retry: int | None = None
    backoffPolicy: Literal["linear", "exponential"] | None = None
    backoffDelay: str | None = None
    timeout: str | None = None
    retryAfterMax: str | None = None
    # The longest wait between retries: the backoff grows up to it (Retry-After has retryAfterMax).
    backoffMax: str | None = None
    # How events are POSTed: json is structured mode, binary (and unset) binary mode.
    format: Literal["json", "binary"] | None = None
    deadLetterSink: Destination | None = None

    def validate_at(self, path: str) -> None:
        if self.retry is not None and not 0 <= self.retry <= MAX_RETRY:
            raise ResourceInvalid(f"{path}.retry", f"must be between 0 and {MAX_RETRY}, got {self.retry}")
        for name in ("backoffDelay", "timeout", "retryAfterMax", "backoffMax"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                seconds = parse_duration(value)
            except ValueError as err:
                raise ResourceInvalid(f"{path}.{name}", str(err)) from None
            if name == "timeout" and seconds <= 0:
                raise ResourceInvalid(f"{path}.{name}", "must be a positive duration")
            if seconds > MAX_DURATION_SECONDS:
                raise ResourceInvalid(
                    f"{path}.{name}", f"{value} is longer than the maximum of P1D (one day)"
                )
        if self.deadLetterSink is not None:
            self.deadLetterSink.validate_at(f"{path}.deadLetterSink")
