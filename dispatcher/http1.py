"""A lean pooled HTTP/1.1 client for deliveries: keep-alive connections per origin, httptools parsing.

aiohttp was more than half of the dispatcher's CPU while draining (its request and response objects, payload
registry, header multidicts and timers, per event). A delivery needs much less: one POST with a known body on
a kept-alive connection and the status, headers and body of the answer. ``Http1Post`` does that and nothing
else: no redirects (a 3xx is the subscriber's answer, as in Knative), no cookies, no decompression, no proxy.

- Connections are pooled per origin (scheme, host, port) and reused while the server keeps them alive; at
  most ``max_connections`` requests are in flight at once across all origins.
- A request sent on a reused connection that the server had closed (the race every keep-alive client has) is
  sent once more on a new connection, as long as no byte of an answer came back.
- ``timeout`` covers connecting, sending and the whole answer; a request that times out closes its connection.
- https always verifies the server's certificate and host name: against the system's CAs, the trust bundle
  and the destination's ``CACerts`` (``keventing.tls.ClientTrust``). Connections are pooled per origin *and*
  trust, so a request never reuses a connection verified against CAs it does not trust itself.
- A destination with an ``audience`` gets an OIDC bearer token for it (``keventing.tokens``).
- A header name or value that would break the request line framing (CR, LF, NUL) is a ``TransportError``
  before anything is sent, so the delivery is retried and then dead-lettered rather than sent malformed.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from dispatcher.transport import Response, TransportError
from keventing.tls import ClientTrust, TrustUnusable
from keventing.tokens import TokenSource, TokenUnavailable

IDLE_SECONDS = 15.0  # an idle connection older than this is closed rather than reused (aiohttp's default)
MAX_IDLE_PER_ORIGIN = 256
_FORBIDDEN = frozenset("\r\n\0")


@dataclass(frozen=True)
class Target:
    """Where a URL's requests go and the request line's target."""

    scheme: str
    host: str
    port: int
    target: bytes  # path and query
    host_header: bytes

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TransportError(f"unsupported URL scheme {parts.scheme!r} in {url}")
    host = parts.hostname
    if not host:
        raise TransportError(f"no host in URL {url}")
    try:
        explicit = parts.port
    except ValueError as err:
        raise TransportError(f"invalid port in URL {url}") from err
    port = explicit or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if explicit is None else f"{shown}:{port}"
    return Target(scheme, host, port, path.encode("utf-8"), host_header.encode("idna"))


class _ClosedUnanswered(TransportError):
    """The connection closed before any byte of an answer: on a reused one, the server had closed it idle."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._answer: asyncio.Future[Response] | None = None
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._headers_done = False
        self._got_bytes = False

    # ------------------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():  # nothing was asked: the connection is unusable
            self.close()
            return
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(TransportError(f"invalid HTTP response: {err}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        answer = self._answer
        if answer is None or answer.done():
            return
        delimited = "content-length" in self._headers or "chunked" in self._headers.get(
            "transfer-encoding", ""
        )
        if self._headers_done and not delimited and self._status >= 200:
            self.reusable = False  # the body ended with the connection (HTTP/1.0 style)
            answer.set_result(Response(self._status, self._headers, b"".join(self._body)))
            return
        reason = f": {exc}" if exc else ""
        kind = TransportError if self._got_bytes else _ClosedUnanswered
        answer.set_exception(kind(f"connection closed before a complete response{reason}"))

    # ------------------------------------------------------------------------------ parser callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._status < 200:  # 100 Continue and friends precede the real answer
            self._reset()
            self._got_bytes = True
            return
        answer = self._answer
        if answer is not None and not answer.done():
            self.reusable = self.parser.should_keep_alive()
            answer.set_result(Response(self._status, self._headers, b"".join(self._body)))

    # ------------------------------------------------------------------------------------- requests

    def _fail(self, error: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)

    def send(self, request: bytes, body: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._reset()
        self.reusable = False
        self._answer = asyncio.get_running_loop().create_future()
        if body:
            self.transport.writelines((request, body))
        else:
            self.transport.write(request)
        return self._answer

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _request_head(target: Target, headers: Mapping[str, str], length: int) -> bytes:
    lines = [b"POST ", target.target, b" HTTP/1.1\r\nhost: ", target.host_header]
    lines += [b"\r\ncontent-length: ", str(length).encode(), b"\r\n"]
    for name, value in headers.items():
        if _FORBIDDEN.intersection(name) or _FORBIDDEN.intersection(value):
            raise TransportError(f"header {name!r} holds a CR, LF or NUL character and cannot be sent")
        lower = name.lower()
        if lower in ("host", "content-length", "transfer-encoding", "connection"):
            continue  # framing is this client's
        lines += [name.encode("utf-8"), b": ", value.encode("utf-8"), b"\r\n"]
    lines.append(b"\r\n")
    return b"".join(lines)


class Http1Post:
    """The dispatcher's ``Post``: pooled keep-alive HTTP/1.1 over asyncio transports (uvloop's, when running)."""

    def __init__(
        self,
        max_connections: int = 100,
        trust_bundle: str | None = None,
        tokens: TokenSource | None = None,
    ) -> None:
        self.limit = asyncio.Semaphore(max_connections) if max_connections > 0 else None
        self.trust = ClientTrust(trust_bundle)
        self.tokens = tokens
        self._idle: dict[tuple[str, str, int, int], deque[_Connection]] = {}
        self._targets: dict[str, Target] = {}  # parsed once per URL, not per event
        self._closing = False

    def _target(self, url: str) -> Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) > 10_000:
                self._targets.clear()
            target = self._targets[url] = parse_target(url)
        return target

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
        target = self._target(url)
        if audience is not None and self.tokens is not None:
            try:
                token = await self.tokens.token(audience)
            except TokenUnavailable as err:
                raise TransportError(f"no OIDC token for audience {audience!r}: {err}") from None
            headers = {**headers, "authorization": f"Bearer {token}"}
        tls = self.tls_context(ca_certs) if target.scheme == "https" else None
        head = _request_head(target, headers, len(body))
        if self.limit is None:
            return await self._timed(target, tls, head, body, timeout)
        async with self.limit:
            return await self._timed(target, tls, head, body, timeout)

    async def _timed(
        self, target: Target, tls: ssl.SSLContext | None, head: bytes, body: bytes, timeout: float | None
    ) -> Response:
        if timeout is None:
            return await self._exchange(target, tls, head, body)
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(target, tls, head, body)
        except TimeoutError as err:
            raise TransportError(f"no response within {timeout} s") from err

    async def _exchange(
        self, target: Target, tls: ssl.SSLContext | None, head: bytes, body: bytes
    ) -> Response:
        pool = (*target.origin, id(tls))  # the trust is part of what a pooled connection was verified with
        connection, reused = self._checkout(pool), True
        if connection is None:
            connection, reused = await self._connect(target, tls), False
        try:
            try:
                response = await connection.send(head, body)
            except _ClosedUnanswered:
                if not reused:
                    raise
                connection.close()
                connection = await self._connect(target, tls)
                response = await connection.send(head, body)
        except BaseException:
            connection.close()  # a timeout or cancellation leaves the answer half read
            raise
        self._checkin(pool, connection)
        return response

    def _checkout(self, pool: tuple[str, str, int, int]) -> _Connection | None:
        idle = self._idle.get(pool)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used is the least likely to have been closed
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return None

    def _checkin(self, pool: tuple[str, str, int, int], connection: _Connection) -> None:
        if connection.closed or not connection.reusable or self._closing:
            connection.close()
            return
        idle = self._idle.setdefault(pool, deque())
        if len(idle) >= MAX_IDLE_PER_ORIGIN:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def _connect(self, target: Target, tls: ssl.SSLContext | None) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                _Connection, target.host, target.port, ssl=tls, server_hostname=target.host if tls else None
            )
        except ssl.SSLCertVerificationError as err:
            raise TransportError(
                f"TLS certificate of {target.host}:{target.port} not trusted: {err}"
            ) from err
        except OSError as err:
            raise TransportError(f"cannot connect to {target.host}:{target.port}: {err}") from err
        return connection

    async def close(self) -> None:
        self._closing = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
