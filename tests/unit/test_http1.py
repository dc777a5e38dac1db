"""The dispatcher's HTTP/1.1 client against real sockets on loopback: servers written for each behaviour."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from kafka_security import make_pki

from dispatcher.http1 import Http1Post, parse_target
from dispatcher.transport import TransportError


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[tuple[bytes, dict[str, str], bytes]] = []
        self.port = 0


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0].encode(), headers, body


@asynccontextmanager
async def serving(
    answer: Callable[[Server, int], bytes | None], tls: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    """A server that answers each request with ``answer(server, index)`` (None: close the connection)."""
    server = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        try:
            while True:
                try:
                    request = await read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                assert request is not None
                server.requests.append(request)
                reply = answer(server, len(server.requests) - 1)
                if reply is None:
                    return
                writer.write(reply)
                await writer.drain()
        finally:
            writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    server.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield server


def ok(body: bytes = b"", status: str = "202 Accepted", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body


async def test_a_post_carries_headers_and_body_and_returns_the_answer() -> None:
    async with serving(lambda s, i: ok(b"hi", "200 OK", "ce-id: r1\r\nX-Two: a\r\nx-two: b\r\n")) as server:
        client = Http1Post()
        url = f"http://127.0.0.1:{server.port}/ns/sink?x=1"
        response = await client.post(url, {"ce-id": "1", "content-type": "text/plain"}, b"payload", 5)
        await client.close()
    assert (response.status, response.body) == (200, b"hi")
    assert response.headers["ce-id"] == "r1" and response.headers["x-two"] == "a, b"
    line, headers, body = server.requests[0]
    assert line == b"POST /ns/sink?x=1 HTTP/1.1"
    assert headers["host"] == f"127.0.0.1:{server.port}" and headers["ce-id"] == "1" and body == b"payload"


async def test_keep_alive_connections_are_reused() -> None:
    async with serving(lambda s, i: ok()) as server:
        client = Http1Post()
        url = f"http://127.0.0.1:{server.port}/"
        for _ in range(20):
            assert (await client.post(url, {}, b"x", 5)).status == 202
        await client.close()
    assert server.connections == 1 and len(server.requests) == 20


async def test_concurrent_requests_open_one_connection_each_and_all_are_answered() -> None:
    async with serving(lambda s, i: ok(str(i).encode())) as server:
        client = Http1Post()
        url = f"http://127.0.0.1:{server.port}/"
        answers = await asyncio.gather(*(client.post(url, {}, b"x", 5) for _ in range(10)))
        await client.close()
    assert sorted(int(a.body) for a in answers) == list(range(10))
    assert server.connections <= 10


async def test_a_connection_the_server_closed_is_replaced_and_the_request_sent_once_more() -> None:
    # The server answers, then closes each connection after its first request without saying so.
    def answer(server: Server, index: int) -> bytes | None:
        return ok() if index % 2 == 0 else None

    async with serving(answer) as server:
        client = Http1Post()
        url = f"http://127.0.0.1:{server.port}/"
        assert (await client.post(url, {}, b"a", 5)).status == 202
        # The reused connection gets no answer; the client sends again on a new one.
        assert (await client.post(url, {}, b"b", 5)).status == 202
        await client.close()
    assert [body for _, _, body in server.requests] == [b"a", b"b", b"b"]
    assert server.connections == 2


async def test_connection_close_answers_are_not_reused() -> None:
    async with serving(lambda s, i: ok(extra="connection: close\r\n")) as server:
        client = Http1Post()
        url = f"http://127.0.0.1:{server.port}/"
        for _ in range(3):
            assert (await client.post(url, {}, b"x", 5)).status == 202
        await client.close()
    assert server.connections == 3


async def test_chunked_and_eof_delimited_bodies_are_read_whole() -> None:
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    async with serving(lambda s, i: chunked) as server:
        client = Http1Post()
        response = await client.post(f"http://127.0.0.1:{server.port}/", {}, b"", 5)
        await client.close()
    assert response.body == b"hello world"

    async def eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    listening = await asyncio.start_server(eof, "127.0.0.1", 0)
    async with listening:
        port = listening.sockets[0].getsockname()[1]
        client = Http1Post()
        response = await client.post(f"http://127.0.0.1:{port}/", {}, b"", 5)
        await client.close()
    assert (response.status, response.body) == (200, b"until the end")


async def test_an_interim_100_continue_is_skipped() -> None:
    async with serving(lambda s, i: b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"done", "200 OK")) as server:
        client = Http1Post()
        response = await client.post(f"http://127.0.0.1:{server.port}/", {}, b"x", 5)
        await client.close()
    assert (response.status, response.body) == (200, b"done")


async def test_no_answer_within_the_timeout_is_a_transport_error_and_the_connection_is_dropped() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    listening = await asyncio.start_server(slow, "127.0.0.1", 0)
    async with listening:
        port = listening.sockets[0].getsockname()[1]
        client = Http1Post()
        with pytest.raises(TransportError, match="no response within 0.2 s"):
            await client.post(f"http://127.0.0.1:{port}/", {}, b"x", 0.2)
        assert not any(client._idle.values())
        await client.close()


async def test_refused_connections_and_bad_urls_are_transport_errors() -> None:
    from kev.kafka.embedded import free_port

    client = Http1Post()
    with pytest.raises(TransportError, match="cannot connect"):
        await client.post(f"http://127.0.0.1:{free_port()}/", {}, b"x", 5)
    with pytest.raises(TransportError, match="unsupported URL scheme 'ftp'"):
        await client.post("ftp://127.0.0.1/x", {}, b"x", 5)
    await client.close()


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async with serving(lambda s, i: ok()) as server:
        client = Http1Post()
        with pytest.raises(TransportError, match="CR, LF or NUL"):
            await client.post(f"http://127.0.0.1:{server.port}/", {"ce-type": "a\r\nx-evil: 1"}, b"", 5)
        await client.close()
    assert server.requests == []


async def test_an_invalid_answer_is_a_transport_error() -> None:
    async with serving(lambda s, i: b"NOT HTTP AT ALL\r\n\r\n") as server:
        client = Http1Post()
        with pytest.raises(TransportError, match="invalid HTTP response"):
            await client.post(f"http://127.0.0.1:{server.port}/", {}, b"x", 5)
        await client.close()


async def test_https_is_verified_against_the_destinations_cacerts_and_never_reused_without_them(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path / "pki")
    serving_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving_tls.load_cert_chain(pki.directory / "broker.crt", pki.directory / "broker.key")
    async with serving(lambda s, i: ok(b"secure", "200 OK"), tls=serving_tls) as server:
        url = f"https://127.0.0.1:{server.port}/"
        client = Http1Post()
        assert (await client.post(url, {}, b"x", 5, ca_certs=pki.ca)).body == b"secure"
        # The system's CAs do not know the test CA, and the kept-alive connection verified with the
        # Destination's CACerts is not this request's to use: never delivered, never downgraded.
        with pytest.raises(TransportError, match="not trusted"):
            await client.post(url, {}, b"x", 5)
        with pytest.raises(TransportError, match="not trusted"):
            await client.post(url, {}, b"x", 5, ca_certs=pki.other_ca)
        await client.close()
        bundled = Http1Post(trust_bundle=pki.ca)
        assert (await bundled.post(url, {}, b"x", 5)).status == 200
        await bundled.close()
    assert len(server.requests) == 2


def test_targets_name_the_origin_and_the_host_header() -> None:
    assert parse_target("http://example.com/a?b=c").origin == ("http", "example.com", 80)
    assert parse_target("https://example.com").target == b"/"
    assert parse_target("https://example.com").host_header == b"example.com"
    assert parse_target("http://[::1]:8080/x").host_header == b"[::1]:8080"
    with pytest.raises(TransportError):
        parse_target("http:///nohost")
