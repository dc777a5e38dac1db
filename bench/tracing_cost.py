"""CPU per event of the receiver's and the dispatcher's hot paths, without sockets or Kafka: what tracing
costs when it is off, sampled out, or on.

    python -m bench.tracing_cost [--events N] [--mode off|sampled-out|on]

The receiver's ``IngressHandler.handle`` (decode, record, produce to an in-memory stub) and the dispatcher's
``RecordDispatcher.select`` + ``dispatch`` (filter, one delivery to a stub that answers 202) run ``N``
times each; the output is CPU microseconds per event (``time.process_time``), best of five rounds. Run it
from two trees in turn (e.g. before and after a change: ``PYTHONPATH=<tree> python -m bench.tracing_cost``)
for a same-machine A/B; ``--mode`` needs a tree with tracing.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from dispatcher.dispatch import RecordDispatcher
from dispatcher.metrics import DispatcherMetrics
from dispatcher.replies import ReplyPublisher
from dispatcher.transport import Response
from keventing import events
from keventing.contract import Egress, Ingress
from receiver.ingress import IngressHandler, IngressTable
from receiver.metrics import IngressMetrics

HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "bench-1",
    "ce-type": "dev.bench",
    "ce-source": "/bench",
    "content-type": "application/json",
}
BODY = b'{"hello":"world"}'
ACCEPTED = Response(202)


class _Post:
    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float | None,
        ca_certs: str | None = None,
        audience: str | None = None,
    ) -> Response:
        return ACCEPTED


async def _produce(*_: Any) -> None:
    return None


def _tracing(mode: str) -> dict[str, Any]:
    if mode == "off":
        return {}
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

    from keventing.tracing import Tracing, new_provider

    provider = new_provider(sampler=ParentBased(ALWAYS_ON if mode == "on" else ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    return {"tracing": Tracing(provider)}


def _best(rounds: int, n: int, run: Any) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        run(n)
        best = min(best, (time.process_time() - started) / n * 1e6)
    return best


def receiver_cost(n: int, mode: str) -> float:
    ingress = Ingress(id="b", kind="Broker", namespace="ns", name="default", path="/ns/default", topic="t")
    handler = IngressHandler(
        IngressTable(), _produce, 1 << 20, 1, IngressMetrics(CollectorRegistry()), **_tracing(mode)
    )
    loop = asyncio.new_event_loop()

    async def many(count: int) -> None:
        for _ in range(count):
            await handler.handle(ingress, HEADERS, BODY)

    try:
        return _best(5, n, lambda count: loop.run_until_complete(many(count)))
    finally:
        loop.close()


def dispatcher_cost(n: int, mode: str) -> float:
    egress = Egress(
        id="Trigger/ns/t",
        kind="Trigger",
        namespace="ns",
        name="t",
        uid="u",
        topics=("t",),
        consumer_group="g",
        destination="http://subscriber/",
    )
    post = _Post()
    replies = ReplyPublisher(_produce, post)
    metrics = DispatcherMetrics(CollectorRegistry()).for_egress(egress)
    dispatcher = RecordDispatcher(egress, post, replies, metrics, 5.0, **_tracing(mode))
    _, headers, value = events.to_kafka_binary(events.from_http(HEADERS, BODY))
    if mode == "sampled-out":
        headers.append(("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"))
    record = ConsumerRecord("t", 0, 1, 1000, 0, None, value, None, len(value or b""), -1, headers)
    loop = asyncio.new_event_loop()

    async def many(count: int) -> None:
        for _ in range(count):
            event = dispatcher.select(record)
            assert event is not None
            await dispatcher.dispatch(event)

    try:
        return _best(5, n, lambda count: loop.run_until_complete(many(count)))
    finally:
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--mode", choices=["off", "sampled-out", "on"], default="off")
    options = parser.parse_args()
    receiver = receiver_cost(options.events, options.mode)
    dispatcher = dispatcher_cost(options.events, options.mode)
    print(f"mode={options.mode} receiver={receiver:.2f} µs/event dispatcher={dispatcher:.2f} µs/event")


if __name__ == "__main__":
    main()
