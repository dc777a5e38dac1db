"""The dispatcher's HTTP boundary: the ``Post`` protocol everything above it uses, and its aiohttp implementation.

Everything that decides what to send and what an answer means sits above this seam and is tested with a
fake transport; only ``AiohttpPost`` opens sockets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased
    body: bytes = b""


class TransportError(Exception):
    """No HTTP answer at all: connection refused or reset, DNS failure, or no response within the timeout."""


class Post(Protocol):
    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout: float | None
    ) -> Response:
        """POST ``body``; ``timeout`` None means the transport's own default. Raises TransportError."""
        ...


class AiohttpPost:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self._timeouts: dict[
            float, aiohttp.ClientTimeout
        ] = {}  # one object per value: built once, not per event

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout: float | None
    ) -> Response:
        # Without a timeout the session's own applies (aiohttp reads timeout=None as "no timeout at all").
        if timeout is None:
            request = self.session.post(url, data=body, headers=headers)
        else:
            request = self.session.post(url, data=body, headers=headers, timeout=self._timeout(timeout))
        try:
            async with request as response:
                payload = await response.read()
                return Response(response.status, {k.lower(): v for k, v in response.headers.items()}, payload)
        except TimeoutError as err:
            raise TransportError(f"no response within {timeout} s") from err
        except aiohttp.ClientError as err:
            raise TransportError(f"{type(err).__name__}: {err}") from err
