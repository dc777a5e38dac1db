"""OIDC tokens keventing sends to a destination with an ``audience`` (Knative's authentication-oidc): the
dispatcher to subscribers and dead-letter sinks, the sources runner to sinks.

Kubernetes mode: the token of a Trigger's or Subscription's own ServiceAccount, by TokenRequest
(:mod:`keventing.serviceaccounttokens`). Local mode: a configured command (``KEVENTING_OIDC_TOKEN_COMMAND``)
is run with the audience as its last argument and prints a JWT for it (e.g. ``kubectl create token SA
--audience``, or an issuer's CLI). Each token is kept until a minute before its ``exp``, so a token is had
once per identity, audience and token lifetime, not per event. A token is never logged; a failing command's stderr is not either (it may echo secrets).
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from keventing.contract import ServiceAccount

# A token is renewed this long before it expires (a request in flight must still arrive with a valid one).
RENEW_BEFORE_SECONDS = 60.0
# A token without exp is kept this long.
DEFAULT_LIFETIME_SECONDS = 300.0


class TokenUnavailable(Exception):
    """No OIDC token could be had for an audience (the message never holds a token)."""


class TokenSource(Protocol):
    async def token(self, audience: str, identity: ServiceAccount | None = None) -> str:
        """An OIDC token for ``audience``, as ``identity`` when the destination's sender has one of its own
        (Kubernetes mode); raises TokenUnavailable saying why not."""
        ...


@dataclass(frozen=True)
class _Cached:
    token: str
    renew_at: float


K = TypeVar("K")


class TokenCache(Generic[K]):
    """Tokens by key until a minute before they expire; one fetch per key at a time, so that concurrent
    deliveries share the token it brings instead of each asking for one."""

    def __init__(self, fetch: Callable[[K], Awaitable[str]]) -> None:
        self.fetch = fetch
        self._cache: dict[K, _Cached] = {}
        self._locks: dict[K, asyncio.Lock] = {}

    async def get(self, key: K) -> str:
        cached = self._cache.get(key)
        if cached is not None and time.time() < cached.renew_at:
            return cached.token
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._cache.get(key)
            if cached is not None and time.time() < cached.renew_at:
                return cached.token
            token = await self.fetch(key)
            self._cache[key] = _Cached(token, _renew_at(token))
            return token


class CommandTokenSource:
    def __init__(self, command: str, timeout_seconds: float = 10.0) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("KEVENTING_OIDC_TOKEN_COMMAND is empty")
        self.timeout_seconds = timeout_seconds
        self._cache = TokenCache(self._run)

    async def token(self, audience: str, identity: ServiceAccount | None = None) -> str:
        """The command's token: it has one identity, whatever the destination's sender (local mode)."""
        return await self._cache.get(audience)

    async def _run(self, audience: str) -> str:
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                audience,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as err:
            raise TokenUnavailable(f"the token command {self.argv[0]!r} cannot run: {err.strerror}") from None
        try:
            async with asyncio.timeout(self.timeout_seconds):
                out, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise TokenUnavailable(f"the token command took longer than {self.timeout_seconds:g} s") from None
        if process.returncode != 0:
            raise TokenUnavailable(f"the token command exited with {process.returncode}")
        token = out.decode("utf-8", "replace").strip()
        if token.count(".") != 2:
            raise TokenUnavailable("the token command did not print a JWT")
        return token


def _renew_at(token: str) -> float:
    """When to ask again: a minute before the token's exp (read, not verified: the subscriber verifies)."""
    import jwt  # here, not at the top: only a process that sends tokens loads it (see keventing.kubeapi)

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenUnavailable("the token is not a JWT") from None
    exp = claims.get("exp")
    if isinstance(exp, int | float):
        return float(exp) - RENEW_BEFORE_SECONDS
    return time.time() + DEFAULT_LIFETIME_SECONDS
