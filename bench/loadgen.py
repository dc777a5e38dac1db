"""A load generator for binary-mode CloudEvents: open loop at a fixed rate, or closed loop at a concurrency.

    python -m bench.loadgen --url URL --rate 1000 --duration 10      # open loop (end-to-end latency)
    python -m bench.loadgen --url URL --concurrency 32 --duration 5  # closed loop (wrk's job, when no wrk)

wrk measures the ingress; this one exists for what wrk cannot do: send at a fixed rate and stamp every event
with a unique ``ce-id`` and its send time (``ce-benchsent``, ``time.monotonic_ns()``) so the sink can measure
send-to-receipt latency and count losses. Raw asyncio protocols on uvloop over keep-alive connections keep it
cheap; it prints one JSON object with what it sent, what came back and the CPU seconds it used itself, so a
run shows whether the generator kept up (achieved rate = offered rate, CPU well under one core).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from collections import Counter, deque
from urllib.parse import urlsplit

import httptools
import orjson
import uvloop

from bench.payload import EVENT_TYPE, event_body


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    async def request(self, payload: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return await self.waiter


class Client:
    def __init__(self, url: str, run_id: str, body: bytes) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.head = (
            f"POST {parts.path or '/'} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"ce-specversion: 1.0\r\nce-type: {EVENT_TYPE}\r\nce-source: /bench/loadgen\r\n"
        ).encode()
        self.body = body
        self.run_id = run_id
        self.idle: deque[Connection] = deque()
        self.statuses: Counter[str] = Counter()
        self.latencies_ns: list[int] = []
        self.sent = 0

    async def _connection(self) -> Connection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(Connection, self.host, self.port)
        return conn

    async def send(self, index: int) -> None:
        try:
            conn = await self._connection()
        except OSError:
            self.statuses["connect error"] += 1
            return
        started = time.monotonic_ns()
        payload = b"%sce-id: %s-%d\r\nce-benchsent: %d\r\n\r\n%s" % (
            self.head,
            self.run_id.encode(),
            index,
            started,
            self.body,
        )
        self.sent += 1
        try:
            status = await conn.request(payload)
        except ConnectionError:
            self.statuses["read error"] += 1
            return
        self.latencies_ns.append(time.monotonic_ns() - started)
        self.statuses[str(status)] += 1
        self.idle.append(conn)

    def result(self, elapsed: float, offered: float | None, lag_ms: float) -> dict[str, object]:
        ordered = sorted(self.latencies_ns)

        def pct(p: float) -> float | None:
            return (
                round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] / 1e6, 3)
                if ordered
                else None
            )

        usage = resource.getrusage(resource.RUSAGE_SELF)
        accepted = sum(n for code, n in self.statuses.items() if code.startswith("2"))
        return {
            "run_id": self.run_id,
            "offered_rate": offered,
            "sent": self.sent,
            "accepted": accepted,
            "statuses": dict(self.statuses),
            "errors": self.sent - accepted + self.statuses["connect error"],
            "elapsed_s": round(elapsed, 3),
            "achieved_rate": round(self.sent / elapsed, 1) if elapsed else 0.0,
            "accepted_rate": round(accepted / elapsed, 1) if elapsed else 0.0,
            "latency_ms": {"p50": pct(50), "p99": pct(99), "p99.9": pct(99.9)},
            "max_schedule_lag_ms": round(lag_ms, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        }


async def open_loop(client: Client, rate: float, duration: float) -> dict[str, object]:
    """Start request i at start + i/rate whatever the answers do (no coordinated omission)."""
    loop = asyncio.get_running_loop()
    total = int(rate * duration)
    tasks: set[asyncio.Task[None]] = set()
    start = loop.time()
    lag = 0.0
    for index in range(total):
        due = start + index / rate
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
        else:
            lag = max(lag, now - due)
        task = asyncio.create_task(client.send(index))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sending = loop.time() - start
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    return client.result(sending, rate, lag * 1000)


async def closed_loop(client: Client, concurrency: int, duration: float) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + duration
    counter = iter(range(1 << 62))

    async def worker() -> None:
        while loop.time() < deadline:
            await client.send(next(counter))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return client.result(loop.time() - start, None, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--duration", type=float, required=True, help="seconds of sending")
    parser.add_argument("--rate", type=float, help="events/s, open loop")
    parser.add_argument("--concurrency", type=int, help="requests in flight, closed loop")
    parser.add_argument("--run-id", default="bench", help="ce-id prefix")
    parser.add_argument("--size", type=int, default=1024, help="data bytes per event")
    args = parser.parse_args()
    client = Client(args.url, args.run_id, event_body(args.size))
    if args.rate:
        result = uvloop.run(open_loop(client, args.rate, args.duration))
    else:
        result = uvloop.run(closed_loop(client, args.concurrency or 1, args.duration))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
