"""Sending as an egress's own identity (authentication-oidc in Kubernetes mode): a ``Post`` that puts the
token of the Trigger's or Subscription's ServiceAccount for the destination's audience on every request to a
destination with an audience (subscriber, reply URL, dead-letter sink), and never sends one without it."""

from __future__ import annotations

from collections.abc import Mapping

from dispatcher.transport import Post, Response, TransportError
from keventing.contract import ServiceAccount
from keventing.tokens import TokenSource, TokenUnavailable


class IdentityPost:
    def __init__(self, inner: Post, tokens: TokenSource | None, identity: ServiceAccount) -> None:
        self.inner = inner
        self.tokens = tokens
        self.identity = identity

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float | None,
        ca_certs: str | None = None,
        audience: str | None = None,
    ) -> Response:
        """Raises TransportError (a failed attempt, retried and dead-lettered like any) without a token."""
        if audience is not None:
            who = f"ServiceAccount {self.identity.namespace}/{self.identity.name}"
            if self.tokens is None:
                raise TransportError(
                    f"no OIDC token for audience {audience!r}: authentication-oidc is disabled"
                )
            try:
                token = await self.tokens.token(audience, self.identity)
            except TokenUnavailable as err:
                raise TransportError(f"no OIDC token of {who} for audience {audience!r}: {err}") from None
            headers = {**headers, "authorization": f"Bearer {token}"}
        return await self.inner.post(url, headers, body, timeout, ca_certs)
