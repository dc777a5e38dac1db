"""The receiver's direct path: POSTs to routed paths answered by the protocol without ASGI, on a real server."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from kev.kafka.embedded import free_port
from receiver import protocol
from receiver.answer import Answer
from receiver.ingress import ACCEPTED
from receiver.protocol import ConnectionLimits, IngressProtocol


class App:
    """Routes /direct/* directly; answers everything else through ASGI with 299."""

    max_event_bytes = 1000
    body_timeout_seconds = 0.5

    def __init__(self) -> None:
        self.handled: list[tuple[dict[str, str], bytes]] = []
        self.asgi: list[str] = []

    def direct_route(self, path: str, scheme: str) -> Any:
        if not path.startswith("/direct"):
            return None
        return self.begin

    def begin(self, headers: dict[str, str], body: bytes, reply: Any) -> Any:
        """x-reply: now (``reply`` before returning), later (from a callback, as on Kafka's acknowledgement),
        or (without it) an awaitable, as the authenticated path returns."""
        mode = headers.get("x-reply")
        if mode is None:
            return self.handle(headers, body)
        if headers.get("x-fail") == "sync":
            raise RuntimeError("boom")
        answer = Answer(202, b"", (("x-seen", str(len(body))),))
        self.handled.append((headers, body))
        if mode == "now":
            reply(answer)
        else:
            asyncio.get_running_loop().call_later(float(mode), reply, answer)
        return None

    async def handle(self, headers: dict[str, str], body: bytes) -> Answer:
        if headers.get("x-fail"):
            raise RuntimeError("boom")
        if headers.get("x-answer") == "accepted":
            return ACCEPTED  # the receiver's own 202, whose bytes the protocol keeps
        if headers.get("x-answer") == "202":
            return Answer(202)
        self.handled.append((headers, body))
        return Answer(202, b"", (("x-seen", str(len(body))),))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.asgi.append(scope["path"])
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 299, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


HEADER_TIMEOUT = 0.5


@pytest.fixture
def short_header_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = ConnectionLimits(100, 64 * 1024, HEADER_TIMEOUT, 1000, 1)
    monkeypatch.setattr(protocol, "_process_limits", lambda: limits)


@contextlib.asynccontextmanager
async def serve(**options: Any) -> AsyncIterator[tuple[App, int]]:
    app, port = App(), free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=IngressProtocol, lifespan="off", log_config=None,
        proxy_headers=False, access_log=False, **options,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield app, port
    server.should_exit = True
    await task


@pytest.fixture
async def served() -> AsyncIterator[tuple[App, int]]:
    async with serve() as served:
        yield served


def post(path: str, body: bytes = b"", extra: str = "", version: str = "1.1") -> bytes:
    head = f"POST {path} HTTP/{version}\r\nhost: x\r\ncontent-length: {len(body)}\r\nCe-Id: 1\r\n{extra}\r\n"
    return head.encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def test_a_routed_post_is_answered_directly_on_a_kept_alive_connection(served: tuple[App, int]) -> None:
    app, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for index in range(3):
        writer.write(post("/direct/ns/b", f"event {index}".encode()))
        status, headers, _ = await read_answer(reader)
        assert status == 202 and headers["x-seen"] == "7" and "date" in headers
    writer.close()
    assert [body for _, body in app.handled] == [b"event 0", b"event 1", b"event 2"]
    assert app.handled[0][0]["ce-id"] == "1"  # names lower-cased
    assert app.asgi == []


async def test_other_requests_take_the_asgi_path(served: tuple[App, int]) -> None:
    app, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/elsewhere", b"x"))
    assert (await read_answer(reader))[0] == 299
    writer.write(b"GET /direct/ns/b HTTP/1.1\r\nhost: x\r\n\r\n")
    assert (await read_answer(reader))[0] == 299
    writer.close()
    assert app.asgi == ["/elsewhere", "/direct/ns/b"] and app.handled == []


async def test_pipelined_requests_are_answered_in_order(served: tuple[App, int]) -> None:
    app, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/direct/a", b"1") + post("/elsewhere", b"2") + post("/direct/b", b"333"))
    answers = [await read_answer(reader) for _ in range(3)]
    writer.close()
    assert [a[0] for a in answers] == [202, 299, 202]
    assert answers[2][1]["x-seen"] == "3"


async def test_pipelined_requests_answered_now_later_and_by_a_task_stay_in_order(
    served: tuple[App, int],
) -> None:
    """No task per request: a reply from a callback (as on Kafka's acknowledgement) or from inside the
    handler, and an awaited answer, each keep their place on the connection."""
    app, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        post("/direct/a", b"1", extra="x-reply: 0.2\r\n")
        + post("/direct/b", b"22", extra="x-reply: now\r\n")
        + post("/direct/c", b"333")
        + post("/direct/d", b"4444", extra="x-reply: 0.05\r\n")
    )  # fmt: skip
    answers = [await read_answer(reader) for _ in range(4)]
    assert [a[1]["x-seen"] for a in answers] == ["1", "2", "3", "4"]
    # Split mid-body: the reply waits for the rest of it.
    writer.write(b"POST /direct/e HTTP/1.1\r\nhost: x\r\ncontent-length: 6\r\nx-reply: now\r\n\r\nabc")
    await asyncio.sleep(0.1)
    writer.write(b"def")
    status, headers, _ = await read_answer(reader)
    writer.close()
    assert status == 202 and headers["x-seen"] == "6"
    assert [body for _, body in app.handled] == [b"1", b"22", b"333", b"4444", b"abcdef"]


async def test_a_handler_failing_before_it_replies_is_500_and_a_late_reply_to_a_gone_client_is_dropped(
    served: tuple[App, int],
) -> None:
    app, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/direct/a", b"x", extra="x-reply: now\r\nx-fail: sync\r\n"))
    status, headers, body = await read_answer(reader)
    assert status == 500 and headers["connection"] == "close" and body == b"internal error\n"
    writer.close()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/direct/a", b"late", extra="x-reply: 0.3\r\n"))
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.5)  # the reply comes after the client left: nothing written, nothing raised
    assert app.handled[-1][1] == b"late"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/direct/a", b"y", extra="x-reply: now\r\n"))
    assert (await read_answer(reader))[0] == 202  # the server is still answering
    writer.close()


async def test_a_shutdown_waits_for_a_reply_still_to_come() -> None:
    async with serve() as (app, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/direct/a", b"x", extra="x-reply: 0.5\r\n"))
        await writer.drain()
        await asyncio.sleep(0.1)
    # serve() left: the server shut down gracefully, after answering (with connection: close).
    status, headers, _ = await read_answer(reader)
    assert status == 202 and headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_too_large_bodies_are_413_and_never_handled(served: tuple[App, int]) -> None:
    app, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/direct/a", b"x" * 1001))
    status, _, body = await read_answer(reader)
    assert status == 413 and b"limit of 1000 bytes" in body
    # Chunked: no length to check first, refused once the limit is passed.
    chunk = b"x" * 600
    writer.write(
        b"POST /direct/a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"258\r\n" + chunk + b"\r\n" + b"258\r\n" + chunk + b"\r\n0\r\n\r\n"
    )  # fmt: skip
    assert (await read_answer(reader))[0] == 413
    writer.close()
    assert app.handled == []


async def test_a_body_that_does_not_arrive_in_time_is_408_and_the_connection_closed(
    served: tuple[App, int],
) -> None:
    app, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /direct/a HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
    status, headers, body = await read_answer(reader)
    assert status == 408 and headers["connection"] == "close" and b"did not arrive" in body
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert app.handled == []


async def test_expect_100_continue_is_answered_before_the_body(served: tuple[App, int]) -> None:
    app, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /direct/a HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 100")
    writer.write(b"data")
    assert (await read_answer(reader))[0] == 202
    writer.close()
    assert app.handled[0][1] == b"data"


async def test_http_1_0_closes_and_a_failing_handler_is_500(served: tuple[App, int]) -> None:
    app, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/direct/a", b"x", version="1.0"))
    status, headers, _ = await read_answer(reader)
    assert status == 202 and headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/direct/a", b"x", extra="x-fail: 1\r\n"))
    status, headers, body = await read_answer(reader)
    assert status == 500 and headers["connection"] == "close" and body == b"internal error\n"
    writer.close()


async def test_a_client_gone_before_the_whole_body_is_never_handled(served: tuple[App, int]) -> None:
    app, port = served
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /direct/a HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.8)  # past the body timeout too
    assert app.handled == []


async def test_the_kept_202_is_the_bytes_of_any_other_202(served: tuple[App, int]) -> None:
    _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    heads = []
    for answer in ("accepted", "202", "accepted"):
        writer.write(post("/direct/a", b"x", extra=f"x-answer: {answer}\r\n"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        heads.append(re.sub(rb"date: [^\r]*\r\n", b"", head))
    writer.close()
    assert heads[0] == heads[1] == heads[2]
    assert heads[0].startswith(b"HTTP/1.1 202 Accepted\r\n") and b"content-length: 0\r\n" in heads[0]


async def test_headers_started_late_on_a_kept_alive_connection_get_their_whole_timeout(
    short_header_timeout: None, served: tuple[App, int]
) -> None:
    """The headers' clock is one timer per connection, re-armed for what is left: a request begun after an
    earlier one still has the whole timeout, and is refused once it passes."""
    app, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/direct/a", b"first"))
    assert (await read_answer(reader))[0] == 202
    await asyncio.sleep(HEADER_TIMEOUT * 0.6)
    writer.write(b"POST /direct/a HTTP/1.1\r\nhost: x\r\n")  # and no more
    begun = time.monotonic()
    status, headers, body = await read_answer(reader)
    elapsed = time.monotonic() - begun
    assert status == 408 and headers["connection"] == "close" and b"did not arrive" in body
    assert HEADER_TIMEOUT * 0.9 <= elapsed < HEADER_TIMEOUT + 2, f"refused after {elapsed:.2f} s"
    assert [body for _, body in app.handled] == [b"first"]


async def test_a_busy_kept_alive_connection_outlives_the_header_timeout(
    short_header_timeout: None, served: tuple[App, int]
) -> None:
    app, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    deadline = time.monotonic() + HEADER_TIMEOUT * 3
    sent = 0
    while time.monotonic() < deadline:
        writer.write(post("/direct/a", b"x"))
        assert (await read_answer(reader))[0] == 202
        sent += 1
        await asyncio.sleep(HEADER_TIMEOUT / 4)
    writer.close()
    assert len(app.handled) == sent >= 8


async def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout() -> None:
    async with serve(timeout_keep_alive=1) as (app, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(6):  # busy past the timeout: kept open
            writer.write(post("/direct/a", b"x"))
            assert (await read_answer(reader))[0] == 202
            await asyncio.sleep(0.3)
        idle = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then idle: closed
        elapsed = time.monotonic() - idle
        writer.close()
    assert 0.6 <= elapsed < 3, f"closed after {elapsed:.2f} s idle"
    assert len(app.handled) == 6
