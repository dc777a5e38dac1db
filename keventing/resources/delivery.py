"""DeliverySpec: retries, backoff, timeout, Retry-After and the dead-letter sink."""

from __future__ import annotations

from typing import Literal

from keventing.durations import parse_duration
from keventing.resources.base import Destination, Model, ResourceInvalid


class DeliverySpec(Model):
    retry: int | None = None
    backoffPolicy: Literal["linear", "exponential"] | None = None
    backoffDelay: str | None = None
    timeout: str | None = None
    retryAfterMax: str | None = None
    deadLetterSink: Destination | None = None

    def validate_at(self, path: str) -> None:
        if self.retry is not None and self.retry < 0:
            raise ResourceInvalid(f"{path}.retry", f"must be >= 0, got {self.retry}")
        for name in ("backoffDelay", "timeout", "retryAfterMax"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                seconds = parse_duration(value)
            except ValueError as err:
                raise ResourceInvalid(f"{path}.{name}", str(err)) from None
            if name == "timeout" and seconds <= 0:
                raise ResourceInvalid(f"{path}.{name}", "must be a positive duration")
        if self.deadLetterSink is not None:
            self.deadLetterSink.validate_at(f"{path}.deadLetterSink")
