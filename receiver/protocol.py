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

A POST to a path the application routes directly (:class:`DirectApp`: an ingress in the contract) is answered
without ASGI: the body is collected by the parser callbacks and the answer written straight to the transport
by an :class:`IngressCycle`, which stands where uvicorn's RequestResponseCycle would (pipelining, keep-alive,
flow of the connection and graceful shutdown stay uvicorn's). Everything else (ops endpoints, OPTIONS, unknown
paths, upgrades) takes the ASGI path. Scope dictionaries, ASGI messages and a timeout context per request
were a third of the receiver's CPU per event.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from receiver.answer import Answer
from receiver.ingress import ACCEPTED, body_timed_out, too_large
from receiver.settings import ReceiverSettings

log = logging.getLogger("keventing.receiver")

Reply = Callable[[Answer], None]
# (headers lower-cased, whole body, reply) → None when the handler calls ``reply`` itself, at once or later
# (once Kafka acknowledged), or an awaitable of the answer, which the cycle awaits in a task of its own.
DirectHandler = Callable[[dict[str, str], bytes, Reply], Awaitable[Answer] | None]


class DirectApp(Protocol):
    """An ASGI application that also answers some POSTs directly, without ASGI."""

    max_event_bytes: int
    body_timeout_seconds: float

    def direct_route(self, path: str, scheme: str) -> DirectHandler | None:
        """The handler of a POST to ``path`` over ``scheme`` (http or https), or None for the ASGI path."""
        ...


class _Signal:
    """What uvicorn's protocol sets when the connection is lost (an ASGI cycle's message event)."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: IngressCycle) -> None:
        self._cycle = cycle

    def set(self) -> None:
        self._cycle.proceed()


class IngressCycle:
    """One directly answered request: what uvicorn's protocol expects of a cycle, and the answer.

    No task per request: the protocol feeds the body (:meth:`feed`, :meth:`complete`) and, once the cycle's
    turn on the connection has come (``started``: not behind a pipelined request) and the parser has returned,
    calls :meth:`proceed`, which hands the whole body to the handler; the handler's ``reply`` writes the
    answer when it comes, from a callback on Kafka's acknowledgement. Only a handler that returns an awaitable
    (authentication, transforms, RequestReply) gets a task. uvicorn sets ``disconnected`` and the
    ``message_event`` when the connection is lost, and ``keep_alive`` to False when the server shuts down.
    """

    def __init__(
        self,
        protocol: IngressProtocol,
        handler: DirectHandler,
        app: DirectApp,
        headers: dict[str, str],
        keep_alive: bool,
        expect_100_continue: bool,
    ) -> None:
        self.protocol = protocol
        self.handler = handler
        self.app = app
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_100_continue = expect_100_continue
        self.on_response: Callable[[], None] = protocol.on_response_complete
        self.disconnected = False
        self.more_body = True
        self.response_complete = False
        self.started = False  # its turn on the connection came
        self._handled = False  # handed to the handler, or answered without it
        self._timer: asyncio.TimerHandle | None = None  # the body's deadline, armed only while waiting for it
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._timed_out = False

    @property
    def message_event(self) -> _Signal:
        return _Signal(self)

    def feed(self, chunk: bytes) -> None:
        if self.response_complete or self._too_large:
            return
        self._size += len(chunk)
        if self._size > self.app.max_event_bytes:
            self._too_large = True  # answered at once; the rest of the body is discarded by the parser
            self._chunks.clear()
            self._due()
            return
        self._chunks.append(chunk)

    def complete(self) -> None:
        self.more_body = False
        self._due()

    def _due(self) -> None:
        # From a parser callback: proceeds once the parser has returned (IngressProtocol.data_received).
        if self.started and not self._handled:
            self.protocol.due = self

    def _body_timeout(self) -> None:
        self._timer = None
        self._timed_out = True
        self.proceed()

    def proceed(self) -> None:
        """Answer, hand the body to the handler, or wait for more of it (never from inside the parser)."""
        if self._handled or not self.started:
            return
        try:
            if self.more_body and not (self.disconnected or self._too_large or self._timed_out):
                self._await_body()
                return
            self._done_waiting()
            if self.disconnected:
                return  # nothing to answer, and nothing half-received is produced
            if self._too_large:
                self._answer(too_large(self.app.max_event_bytes))
            elif self._timed_out:
                self.keep_alive = False
                self._answer(body_timed_out(self.app.body_timeout_seconds))
            else:
                body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
                pending = self.handler(self.headers, body, self._reply)
                if pending is not None:
                    task = asyncio.get_running_loop().create_task(self._await_answer(pending))
                    self.protocol.tasks.add(task)
                    task.add_done_callback(self.protocol.tasks.discard)
        except Exception as err:  # as uvicorn's cycle: never leave the client without an answer
            self._internal_error(err)

    def _await_body(self) -> None:
        if self._timer is not None:
            return  # already waiting
        # Refused before the body arrives if it says it is too large (a whole body is counted in feed).
        length = self.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.app.max_event_bytes:
            self._handled = True
            self._answer(too_large(self.app.max_event_bytes))
            return
        transport = self.protocol.transport
        if self.expect_100_continue and not transport.is_closing():
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._timer = asyncio.get_running_loop().call_later(self.app.body_timeout_seconds, self._body_timeout)

    def _done_waiting(self) -> None:
        self._handled = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _await_answer(self, pending: Awaitable[Answer]) -> None:
        try:
            self._reply(await pending)
        except BaseException as err:
            self._internal_error(err)
            if not isinstance(err, Exception):
                raise

    def _internal_error(self, err: BaseException) -> None:
        if not isinstance(err, asyncio.CancelledError):
            log.error("unexpected error answering an ingress request", exc_info=err)
        self._handled = True
        if not self.response_complete:
            self.keep_alive = False
            self._answer(Answer(500, b"internal error\n"))

    def _reply(self, answer: Answer) -> None:
        if self.response_complete:
            return  # answered already (an internal error)
        try:
            self._answer(answer)
        except Exception as err:
            self._internal_error(err)

    def _answer(self, answer: Answer) -> None:
        self.response_complete = True
        on_response, self.on_response = self.on_response, _nothing
        transport = self.protocol.transport
        if self.disconnected or transport.is_closing():
            return
        if answer is ACCEPTED and self.keep_alive:
            transport.write(_accepted(self.protocol.server_state.default_headers))
            on_response()
            return
        content = [STATUS_LINE[answer.status]]
        for name, value in self.protocol.server_state.default_headers:
            content += (name, b": ", value, b"\r\n")
        if answer.plain_text:
            content.append(b"content-type: text/plain; charset=utf-8\r\n")
        for text_name, text_value in answer.headers:
            content += (text_name.encode(), b": ", text_value.encode(), b"\r\n")
        content += (b"content-length: ", str(len(answer.body)).encode(), b"\r\n")
        if not self.keep_alive:
            content.append(b"connection: close\r\n")
        content += (b"\r\n", answer.body)
        transport.write(b"".join(content))
        if not self.keep_alive:
            transport.close()
        on_response()


def _nothing() -> None:
    pass


# The bytes of the keep-alive 202, by the default headers they were built with (uvicorn replaces its list, with
# the date header, once a second): most answers are this one, and joining it per request was measurable.
_accepted_for: list[object] = [None, b""]


def _accepted(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    if _accepted_for[0] is not default_headers:
        content = [STATUS_LINE[ACCEPTED.status]]
        for name, value in default_headers:
            content += (name, b": ", value, b"\r\n")
        content.append(b"content-length: 0\r\n\r\n")
        _accepted_for[:] = [default_headers, b"".join(content)]
    return _accepted_for[1]  # type: ignore[return-value]


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


class Deadline:
    """A deadline started and stopped with every request but rarely reached: one timer, re-armed for what is
    left when it fires, instead of a timer armed and cancelled per request (the header and keep-alive
    timeouts of a busy connection cost a clock reading per request)."""

    __slots__ = ("_loop", "_timeout", "_expired", "_since", "_running", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._timeout = timeout
        self._expired = expired
        self._since = 0.0
        self._running = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self._running

    def start(self, restart: bool = False) -> None:
        """Start the clock now (``restart``: even if it is already running)."""
        if self._running and not restart:
            return
        self._running = True
        self._since = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_later(self._timeout, self._fire)

    def stop(self) -> None:
        """Not expiring: the timer may stay armed, and does nothing when it fires."""
        self._running = False

    def cancel(self) -> None:
        """Stopped for good (the connection is closing): the timer goes too."""
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if not self._running:
            return
        left = self._since + self._timeout - self._loop.time()
        if left > 0:
            self._timer = self._loop.call_later(left, self._fire)
            return
        self._running = False
        self._expired()


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
        # A direct request whose turn came and whose body the parser completed (or refused) in this call of
        # data_received: it proceeds once the parser has returned.
        self.due: IngressCycle | None = None
        # Headers are awaited against this from the request's first byte (or the connection's start).
        self._header_clock = Deadline(self.loop, self.limits.header_timeout_seconds, self._header_timeout)
        # uvicorn arms a keep-alive timer per response: the same clock instead (``on_response_complete``).
        self._idle_clock = Deadline(self.loop, self.timeout_keep_alive, self.timeout_keep_alive_handler)

    # ------------------------------------------------------------------------------- connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_clock.start()

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_clock.cancel()
        self._idle_clock.cancel()
        super().connection_lost(exc)

    def _unset_keepalive_if_required(self) -> None:
        self._idle_clock.stop()

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive timeout on :class:`Deadline` instead of a timer per response."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_clock.stop()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_clock.start(restart=True)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None or self.parser is None:
            return
        self._unset_keepalive_if_required()
        if self._awaiting_headers:
            self._header_clock.start()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.due = None
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as err:
            if self._refusal is None:
                reason = err.__cause__ or err.__context__ or err
                self._refusal = (400, f"invalid HTTP request: {reason}", ())
            self.due = None  # the connection closes with the refusal: nothing before it is handled
            self._send_refusal()
            return
        due = self.due
        if due is not None:
            self.due = None
            due.proceed()
        if self._awaiting_headers:
            # httptools buffers a header until it is complete: count what it holds, not only what it passed on.
            self._buffered += len(data)
            if self._buffered > self.limits.max_header_bytes:
                self._refusal = self._headers_too_large()
                self._send_refusal()

    # ------------------------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        # uvicorn's own begins with an ASGI scope, which only the ASGI path needs: built in on_headers_complete.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self._awaiting_headers = True
        self._buffered = 0
        self._header_bytes = 0
        self._header_count = 0
        self._header_clock.start()

    def on_url(self, url: bytes) -> None:
        self._count(len(url), 0)
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        limits = self.limits
        if self._header_count > limits.max_header_count or self._header_bytes > limits.max_header_bytes:
            self._count(0, 0)  # refuses, saying which limit
        # uvicorn's own, inlined (a call per header saved); llhttp keeps trailing whitespace (RFC 9110 5.5).
        name = name.lower()
        value = value.rstrip(b" \t")
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_clock.stop()
        if (
            len(self.connections) > self.limits.max_concurrency
            or len(self.tasks) >= self.limits.max_concurrency
        ):
            self.logger.warning("the receiver is at its concurrency limit: answered 503")
            message = "the receiver is at its limit of concurrent requests: retry later"
            self._refuse(503, message, ((b"retry-after", str(self.limits.retry_after_seconds).encode()),))
        if not self._direct():
            self._begin_scope()
            super().on_headers_complete()

    def _begin_scope(self) -> None:
        """uvicorn's message begin (the ASGI scope), keeping the request line and headers already parsed."""
        url, headers, expect_100_continue = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.headers, self.expect_100_continue = url, headers, expect_100_continue
        self.scope["headers"] = headers

    def _direct(self) -> bool:
        """Start (or queue behind a pipelined request) an :class:`IngressCycle` if the app routes this POST."""
        route = getattr(self.app, "direct_route", None)  # an attribute lookup, not isinstance, per request
        if route is None or self.parser.get_method() != b"POST" or self.parser.should_upgrade():
            return False
        app: DirectApp = self.app  # type: ignore[assignment]
        url = self.url
        if url[:1] == b"/" and b"?" not in url and b"#" not in url:
            raw = url.decode("ascii")  # origin form, the path alone: what parse_url would give
        else:
            raw = httptools.parse_url(url).path.decode("ascii")
        handler = route(urllib.parse.unquote(raw) if "%" in raw else raw, self.scheme or "http")
        if handler is None:
            return False
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in self.headers}
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        existing = self.cycle
        cycle = IngressCycle(self, handler, app, headers, keep_alive, self.expect_100_continue)
        self.cycle = cycle  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            cycle.started = True  # proceeds when its body is complete (complete, or feed refusing it)
            self.due = cycle  # or, when the parser returns without it, waits for it (proceed arms the timer)
        else:
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, app))  # type: ignore[arg-type]
        return True

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        """A pipelined request's turn (on_response_complete): a direct one proceeds without a task."""
        if isinstance(cycle, IngressCycle):
            cycle.started = True
            cycle.proceed()
        else:
            super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if isinstance(cycle, IngressCycle):
            cycle.feed(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if isinstance(cycle, IngressCycle):
            cycle.complete()
        else:
            super().on_message_complete()

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
        self._header_clock.cancel()
        if not self.transport.is_closing():
            self.transport.write(b"".join(content))
            self.transport.close()

    def _header_timeout(self) -> None:
        # Behind a request still being answered, nothing is refused: the clock starts again with more data.
        if self._awaiting_headers and (self.cycle is None or self.cycle.response_complete):
            timeout = self.limits.header_timeout_seconds
            self._refusal = (408, f"the request headers did not arrive within {timeout:g} seconds", ())
            self._send_refusal()
