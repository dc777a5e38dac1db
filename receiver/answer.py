"""What the receiver answers a request with: a status, a body and headers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def plain_text(self) -> bool:
        """Whether the body is a message in plain text (it is unless ``headers`` give its content-type, as an
        event's answer does)."""
        return bool(self.body) and not any(name == "content-type" for name, _ in self.headers)
