"""The receiver's token verifier against a JWKS issuer served from a thread (tests/oidc_issuer.py): keys
fetched once, refetched for an unknown key id no more than the rate limit allows, kept when the issuer is
away."""

from __future__ import annotations

from collections.abc import Iterator

import jwt
import pytest
from oidc_issuer import JwksIssuer, SigningKey

from kev.kafka.embedded import free_port
from receiver.oidc import IssuerUnavailable, OidcVerifier, Unauthenticated

AUDIENCE = "eventing.knative.dev/broker/shop/default"


@pytest.fixture
def issuer() -> Iterator[JwksIssuer]:
    server = JwksIssuer()
    server.start()
    yield server
    server.stop()


async def test_an_unknown_key_id_refetches_the_keys_at_most_once_per_refresh_interval(
    issuer: JwksIssuer,
) -> None:
    verifier = OidcVerifier(issuer.url, refresh_seconds=3600)
    try:
        claims = await verifier.verify(f"Bearer {issuer.token(AUDIENCE)}", AUDIENCE)
        assert claims["aud"] == AUDIENCE and issuer.jwks_requests == 1
        rotated = issuer.rotate()
        for _ in range(5):  # within the interval: refused without asking the issuer again
            with pytest.raises(Unauthenticated, match="does not publish"):
                await verifier.verify(f"Bearer {issuer.token(AUDIENCE, key=rotated)}", AUDIENCE)
        assert issuer.jwks_requests == 1
    finally:
        await verifier.close()


async def test_the_last_keys_still_verify_while_the_issuer_is_away(issuer: JwksIssuer) -> None:
    verifier = OidcVerifier(issuer.url, refresh_seconds=0, max_age_seconds=0)
    token = issuer.token(AUDIENCE)
    try:
        await verifier.verify(f"Bearer {token}", AUDIENCE)
        issuer.stop()
        claims = await verifier.verify(f"Bearer {token}", AUDIENCE)  # stale keys, the refetch fails
        assert claims["aud"] == AUDIENCE
    finally:
        await verifier.close()


async def test_an_issuer_never_reached_is_unavailable_not_unauthenticated() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    key = SigningKey()
    token = jwt.encode({"iss": url, "aud": AUDIENCE, "exp": 2**31}, key.private, algorithm="RS256",
                       headers={"kid": key.kid})  # fmt: skip
    verifier = OidcVerifier(url, refresh_seconds=0)
    try:
        with pytest.raises(IssuerUnavailable, match="cannot be fetched"):
            await verifier.verify(f"Bearer {token}", AUDIENCE)
    finally:
        await verifier.close()
