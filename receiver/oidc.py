"""OIDC sender identity (Knative's authentication-oidc): a request is accepted only with a bearer JWT from
the configured issuer, signed by one of the issuer's keys, for the audience of the resource it is sent to.

The keys come from the issuer's discovery document (``<issuer>/.well-known/openid-configuration``, its
``jwks_uri``), cached; a token signed with a key id the cache does not know makes the verifier fetch the
keys again (at most once per ``refresh_seconds``), so rotated keys are picked up without a restart. Only
asymmetric signatures are accepted: ``alg: none`` and HMAC (whose "key" would be public) never are.

PyJWT does the JOSE part (signature, ``exp``/``nbf``/``iss``/``aud``): it is the most used Python JWT
library, maintained, typed, and small on top of ``cryptography``; the discovery and key fetching are ours
because its own JWKS client is synchronous (it would block the event loop).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    import jwt

log = logging.getLogger("keventing.receiver.oidc")

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
# Clock skew allowed on exp, nbf and iat.
LEEWAY_SECONDS = 30.0


class Unauthenticated(Exception):
    """The request's token is missing or not valid: 401 with this message (never the token itself)."""


class IssuerUnavailable(Exception):
    """The issuer's keys cannot be fetched: the receiver cannot tell, so the sender should retry (503)."""


class OidcVerifier:
    def __init__(
        self,
        issuer: str,
        ca_file: str | None = None,
        refresh_seconds: float = 10.0,
        max_age_seconds: float = 300.0,
        jwks_url: str | None = None,
    ) -> None:
        self.issuer = issuer
        # Where the keys are, when not where the discovery document says (a kube-apiserver advertises its
        # jwks_uri at its external address, which a receiver beside it may not reach).
        self.jwks_url = jwks_url
        self.refresh_seconds = refresh_seconds
        self.max_age_seconds = max_age_seconds
        # The system's CAs plus the issuer's own (a cluster's service-account issuer has a private CA).
        self._ssl = ssl.create_default_context(cafile=ca_file) if ca_file else None
        if ca_file and self._ssl is not None:
            self._ssl.load_default_certs()
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def verify(self, authorization: str | None, audience: str) -> Mapping[str, Any]:
        """The token's claims; raises Unauthenticated (401) or IssuerUnavailable (503)."""
        if not authorization:
            raise Unauthenticated(
                f"no bearer token: send Authorization: Bearer <JWT> for audience {audience}"
            )
        import jwt  # here, not at the top: a receiver without an issuer never loads it (see keventing.kubeapi)

        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("the Authorization header is not 'Bearer <JWT>'")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise Unauthenticated(
                f"token algorithm {algorithm!r} is not accepted (only signatures: {', '.join(ALGORITHMS)})"
            )
        key = await self._key(header.get("kid"))
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the token is not for audience {audience}") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"the token is not from issuer {self.issuer}") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature is not valid") from None
        except jwt.PyJWTError as err:
            raise Unauthenticated(f"the token is not valid: {err}") from None

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        # The last attempt, successful or not: the issuer is asked at most once per refresh_seconds.
        attempted = self._attempted_at
        stale = self._fetched_at is None or now - self._fetched_at > self.max_age_seconds
        unknown = kid not in self._keys and not (kid is None and len(self._keys) == 1)
        may_refresh = attempted is None or now - attempted >= self.refresh_seconds
        if (stale or unknown) and may_refresh:
            async with self._lock:  # concurrent requests share one fetch
                if self._attempted_at == attempted:
                    self._attempted_at = time.monotonic()
                    try:
                        await self._fetch()
                    except IssuerUnavailable:
                        if not self._keys:
                            raise
                        # The issuer is away: the keys it published last still verify (it is logged).
        elif not self._keys:
            raise IssuerUnavailable("the OIDC issuer's keys could not be fetched yet: retry shortly")
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated(f"the token is signed with key {kid!r}, which the issuer does not publish")
        return key

    async def _fetch(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        discovery_url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            discovery = await self._get_json(discovery_url)
            if discovery.get("issuer") != self.issuer:
                raise IssuerUnavailable(
                    f"the discovery document at {discovery_url} names issuer {discovery.get('issuer')!r}, "
                    f"not {self.issuer!r}"
                )
            jwks_uri = self.jwks_url or discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise IssuerUnavailable(f"the discovery document at {discovery_url} has no jwks_uri")
            jwks = await self._get_json(jwks_uri)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            log.warning(
                "cannot fetch the OIDC issuer's keys", extra={"issuer": self.issuer, "error": str(err)}
            )
            raise IssuerUnavailable(f"the OIDC issuer's keys cannot be fetched: {err}") from None
        import jwt

        keys: dict[str | None, jwt.PyJWK] = {}
        for entry in jwks.get("keys") or []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                keys[entry.get("kid")] = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type this library cannot use: tokens signed with it are refused
        self._keys = keys
        self._fetched_at = time.monotonic()
        log.info(
            "fetched the OIDC issuer's keys", extra={"issuer": self.issuer, "kids": sorted(map(str, keys))}
        )

    async def _get_json(self, url: str) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.get(url, ssl=self._ssl if self._ssl is not None else True) as response:
            if response.status != 200:
                raise ValueError(f"GET {url} answered {response.status}")
            body = await response.json(content_type=None)
        if not isinstance(body, dict):
            raise ValueError(f"GET {url} did not answer a JSON object")
        return body
