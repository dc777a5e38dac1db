"""The drain baseline: the least a dispatcher must do — read a topic with aiokafka and POST every record as a
binary-mode event with a pooled keep-alive HTTP client — and nothing else (no filters, retries, metrics).

    python -m bench.drain_baseline --bootstrap HOST:PORT --topic T --url URL --count N

Reads from the earliest offset with its own consumer group, posts each poll's records concurrently (at most
``--in-flight`` at a time, the dispatcher's default), commits after each poll, and exits after ``--count``
records. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time

import aiohttp
import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, ConsumerRecord


def http_headers(record: ConsumerRecord) -> dict[str, str]:
    headers = {}
    for name, value in record.headers:
        if name.startswith("ce_"):
            headers["ce-" + name[3:]] = value.decode()
        elif name == "content-type":
            headers[name] = value.decode()
    return headers


async def drain(bootstrap: str, topic: str, url: str, count: int, in_flight: int) -> dict[str, object]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-baseline-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=500,
    )
    connector = aiohttp.TCPConnector(limit=in_flight)
    limit = asyncio.Semaphore(in_flight)
    posted = failed = 0
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(record: ConsumerRecord) -> None:
            nonlocal posted, failed
            async with limit:
                async with session.post(url, data=record.value, headers=http_headers(record)) as response:
                    await response.read()
                    posted += 1
                    failed += response.status >= 300

        await consumer.start()
        started = time.monotonic()
        try:
            while posted < count:
                batches = await consumer.getmany(timeout_ms=100, max_records=500)
                records = [r for rs in batches.values() for r in rs]
                if records:
                    await asyncio.gather(*(post(r) for r in records))
                    await consumer.commit()
        finally:
            await consumer.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "posted": posted,
        "failed": failed,
        "elapsed_s": round(time.monotonic() - started, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "max_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--in-flight", type=int, default=50)
    args = parser.parse_args()
    result = uvloop.run(drain(args.bootstrap, args.topic, args.url, args.count, args.in_flight))
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
