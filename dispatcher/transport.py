"""The dispatcher's HTTP boundary: the ``Post`` protocol everything above it uses, and its aiohttp implementation.

Everything that decides what to send and what an answer means sits above this seam and is tested with a
fake transport; only ``AiohttpPost`` opens sockets. It is also where a delivery's identity and trust are
applied: an https destination's certificate is verified against the system's CAs, the dispatcher's trust
bundle and the Destination's ``CACerts`` (never not verified), and a destination with an ``audience`` gets
an OIDC token for it.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from keventing.tls import ClientTrust, TrustUnusable
from keventing.tokens import TokenSource, TokenUnavailable


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


class AiohttpPost:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        trust_bundle: str | None = None,
        tokens: TokenSource | None = None,
    ) -> None:
        self.session = session
        self.trust = ClientTrust(trust_bundle)
        self.tokens = tokens
        self._timeouts: dict[
            float, aiohttp.ClientTimeout
        ] = {}  # one object per value: built once, not per event

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    def tls_context(self, ca_certs: str | None) -> ssl.SSLContext:
        """The verifying context for a destination's CACerts. Raises TransportError when they are unusable."""
        try:
            return self.trust.context(ca_certs)
        except TrustUnusable as err:
            raise TransportError(str(err)) from None

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float | None,
        ca_certs: str | None = None,
        audience: str | None = None,
    ) -> Response:
        if audience is not None and self.tokens is not None:
            try:
                token = await self.tokens.token(audience)
            except TokenUnavailable as err:
                raise TransportError(f"no OIDC token for audience {audience!r}: {err}") from None
            headers = {**headers, "authorization": f"Bearer {token}"}
        options: dict[str, object] = {}
        if url[:6].lower() == "https:":
            options["ssl"] = self.tls_context(ca_certs)
        # Without a timeout the session's own applies (aiohttp reads timeout=None as "no timeout at all").
        if timeout is not None:
            options["timeout"] = self._timeout(timeout)
        request = self.session.post(url, data=body, headers=headers, **options)  # type: ignore[arg-type]
        try:
            async with request as response:
                payload = await response.read()
                return Response(response.status, {k.lower(): v for k, v in response.headers.items()}, payload)
        except TimeoutError as err:
            raise TransportError(f"no response within {timeout} s") from err
        except aiohttp.ClientError as err:
            raise TransportError(f"{type(err).__name__}: {err}") from err
