"""The dispatcher's HTTP boundary: the ``Post`` protocol everything above it uses, its answer and its error.

Everything that decides what to send and what an answer means sits above this seam and is tested with a
fake transport; only ``dispatcher.http1.Http1Post`` opens sockets. It is also where a delivery's identity and
trust are applied: an https destination's certificate is verified against the system's CAs, the dispatcher's
trust bundle and the Destination's ``CACerts`` (never not verified), and a destination with an ``audience``
gets an OIDC token for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased
    body: bytes = b""


class TransportError(Exception):
    """No HTTP answer at all: connection refused or reset, DNS failure, or no response within the timeout."""


class Post(Protocol):
    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float | None,
        ca_certs: str | None = None,
        audience: str | None = None,
    ) -> Response:
        """POST ``body``; ``timeout`` None means the transport's own default; ``ca_certs`` (PEM) are trusted
        besides the system's for an https URL; ``audience``: send an OIDC token for it. Raises
        TransportError."""
        ...
