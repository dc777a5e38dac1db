"""A fast HTTP sink that answers every POST 202 and keeps, per path, what it received and when.

    python -m bench.sink --port 9000

Raw asyncio protocol with httptools on uvloop, so that it costs the dispatcher's subscriber as little as
possible. Events carrying a ``ce-benchsent`` header (``time.monotonic_ns()`` of the sender: CLOCK_MONOTONIC
is one clock for every process on Linux) give send-to-receipt latencies. ``GET /_stats/<path>`` answers the
counts and latency percentiles of ``<path>`` as JSON; ``?slow=1`` adds the events slower than 10 ms, each as
its wall-clock send time and latency in seconds (what is matched against the broker's GC pauses);
``GET /_reset/<path>`` answers the same and forgets them.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

import httptools
import orjson
import uvloop

ACCEPTED = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"
ACCEPTED_CLOSE = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
SLOW_NS = 10_000_000  # issue #16's end-to-end bound: the events over it are kept one by one
SLOW_KEPT = 50_000  # at most, per path (1 % of a 20 s run at 5,000 events/s is 1,000)


@dataclass
class PathStats:
    count: int = 0
    ids: set[bytes] = field(default_factory=set)
    latencies_ns: list[int] = field(default_factory=list)
    slow: list[tuple[int, int]] = field(default_factory=list)  # (send time, latency) in monotonic ns
    first_ns: int = 0
    last_ns: int = 0

    def add(self, event_id: bytes | None, sent: bytes | None, now: int) -> None:
        if self.count == 0:
            self.first_ns = now
        self.count += 1
        self.last_ns = now
        if event_id is not None:
            self.ids.add(event_id)
        if sent is not None:
            latency = now - int(sent)
            self.latencies_ns.append(latency)
            if latency > SLOW_NS and len(self.slow) < SLOW_KEPT:
                self.slow.append((now - latency, latency))

    def summary(self, slow: bool = False) -> dict[str, object]:
        ordered = sorted(self.latencies_ns)

        def pct(p: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] / 1e6, 3)

        return {
            "count": self.count,
            "unique": len(self.ids),
            "duplicates": self.count - len(self.ids) if self.ids else 0,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "latency_ms": {
                "p50": pct(50),
                "p99": pct(99),
                "p99.9": pct(99.9),
                "max": round(ordered[-1] / 1e6, 3) if ordered else None,
            },
            **({"slow": self._slow_wall()} if slow else {}),
        }

    def _slow_wall(self) -> list[tuple[float, float]]:
        # CLOCK_MONOTONIC is one clock machine-wide; its offset to the wall clock is read once, here.
        offset = time.time_ns() - time.monotonic_ns()
        return [((sent + offset) / 1e9, latency / 1e9) for sent, latency in self.slow]


class SinkProtocol(asyncio.Protocol):
    def __init__(self, stats: dict[str, PathStats]) -> None:
        self.stats = stats
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.event_id: bytes | None = None
        self.sent: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"ce-id":
            self.event_id = value
        elif lowered == b"ce-benchsent":
            self.sent = value

    def on_message_complete(self) -> None:
        assert self.transport is not None
        now = time.monotonic_ns()
        path, _, query = self.url.decode().partition("?")
        path = path.strip("/")
        if path.startswith(("_stats/", "_reset/")):
            stats = self.stats.pop(path[7:], None) if path[:7] == "_reset/" else self.stats.get(path[7:])
            body = orjson.dumps((stats or PathStats()).summary(slow="slow=1" in query.split("&")))
            head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            self.transport.write(head.encode() + body)
        else:
            stats = self.stats.get(path)
            if stats is None:
                stats = self.stats[path] = PathStats()
            stats.add(self.event_id, self.sent, now)
            keep_alive = self.parser.should_keep_alive()
            self.transport.write(ACCEPTED if keep_alive else ACCEPTED_CLOSE)
            if not keep_alive:
                self.transport.close()
        self._reset()


async def serve(host: str, port: int) -> None:
    stats: dict[str, PathStats] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(stats), host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
