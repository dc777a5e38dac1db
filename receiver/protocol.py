"""The receiver's HTTP/1.1 connection: uvicorn's httptools protocol with the limits an ingress needs.

httptools buffers a header until it is complete and uvicorn has no read timeout before a request's headers,
so without these one client could fill memory with one header or hold a connection open forever:

- request line and headers: at most ``max_header_count`` headers and ``max_header_bytes`` bytes, else 431;
- the headers must arrive within ``header_timeout_seconds`` of the request's first byte (or of the
  connection), else 408 and the connection is closed (slowloris);
- at most ``max_concurrency`` open connections or requests in flight, else 503 with Retry-After;
- a request the parser refuses (e.g. two different Content-Length headers) gets 400 saying why.

The limits come from :class:`ReceiverSettings` in each worker process (uvicorn pickles the protocol class,
not an instance, to its workers).
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from receiver.settings import ReceiverSettings


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_count: int
    max_header_bytes: int
    header_timeout_seconds: float
    max_concurrency: int
    retry_after_seconds: int

    @classmethod
    def of(cls, settings: ReceiverSettings) -> ConnectionLimits:
        return cls(
            settings.max_header_count,
            settings.max_header_bytes,
            settings.header_timeout_seconds,
            settings.max_concurrency,
            settings.retry_after_seconds,
        )


@functools.cache
def _process_limits() -> ConnectionLimits:
    return ConnectionLimits.of(ReceiverSettings())


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the answer is in ``IngressProtocol._refusal``."""


class IngressProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = _process_limits()
        # Checked here with a Retry-After instead of uvicorn's bare 503.
        self.limit_concurrency = None
        self._refusal: tuple[int, str, tuple[tuple[bytes, bytes], ...]] | None = None
        self._awaiting_headers = True
        self._buffered = 0  # bytes received since the request began, while its headers are incomplete
        self._header_bytes = 0  # bytes of the request line and headers the parser passed on
        self._header_count = 0
        self._header_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------------------- connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None or self.parser is None:
            return
        self._unset_keepalive_if_required()
        if self._awaiting_headers:
            self._arm_header_timer()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as err:
            if self._refusal is None:
                reason = err.__cause__ or err.__context__ or err
                self._refusal = (400, f"invalid HTTP request: {reason}", ())
            self._send_refusal()
            return
        if self._awaiting_headers:
            # httptools buffers a header until it is complete: count what it holds, not only what it passed on.
            self._buffered += len(data)
            if self._buffered > self.limits.max_header_bytes:
                self._refusal = self._headers_too_large()
                self._send_refusal()

    # ------------------------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        self._buffered = 0
        self._header_bytes = 0
        self._header_count = 0
        self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4, 1)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._cancel_header_timer()
        if (
            len(self.connections) > self.limits.max_concurrency
            or len(self.tasks) >= self.limits.max_concurrency
        ):
            self.logger.warning("the receiver is at its concurrency limit: answered 503")
            message = "the receiver is at its limit of concurrent requests: retry later"
            self._refuse(503, message, ((b"retry-after", str(self.limits.retry_after_seconds).encode()),))
        super().on_headers_complete()

    def _count(self, size: int, headers: int) -> None:
        self._header_count += headers
        self._header_bytes += size
        if self._header_count > self.limits.max_header_count:
            self._refuse(
                431, f"too many request headers: at most {self.limits.max_header_count} are accepted", ()
            )
        if self._header_bytes > self.limits.max_header_bytes:
            status, message, extra = self._headers_too_large()
            self._refuse(status, message, extra)

    def _headers_too_large(self) -> tuple[int, str, tuple[tuple[bytes, bytes], ...]]:
        limit = self.limits.max_header_bytes
        return 431, f"the request line and headers are larger than the limit of {limit} bytes", ()

    def _refuse(self, status: int, message: str, extra: tuple[tuple[bytes, bytes], ...]) -> None:
        self._refusal = (status, message, extra)
        raise _Refused(message)

    # ------------------------------------------------------------------------------- answers

    def _send_refusal(self) -> None:
        assert self._refusal is not None
        status, message, extra = self._refusal
        body = message.encode() + b"\n"
        content = [STATUS_LINE[status]]
        for name, value in (*self.server_state.default_headers, *extra):
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.write(b"".join(content))
            self.transport.close()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.limits.header_timeout_seconds, self._header_timeout
            )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._awaiting_headers and (self.cycle is None or self.cycle.response_complete):
            timeout = self.limits.header_timeout_seconds
            self._refusal = (408, f"the request headers did not arrive within {timeout:g} seconds", ())
            self._send_refusal()
