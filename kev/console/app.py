"""The console's HTTP surface: the page and its fragments, a JSON API, the live tail as Server-Sent Events,
and /healthz, /readyz, /metrics like every service.

Read-only: no route changes anything (no redrive exists to offer yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from kev.console.render import DeadLetters, PageContext, render_dead_letters, render_page, render_resources
from kev.console.render import render_svg as svg_of
from kev.console.state import (
    ClusterResources,
    ConsoleSettings,
    ContractView,
    FlowMeter,
    ResourceView,
    StoreResources,
)
from kev.console.topology import Topology, build_topology
from kev.eventpath import connection_of, dead_letter_ingress
from kev.tail import FilterError, TailError, cesql_filter, recent, tail
from keventing.contract import Ingress
from keventing.metrics import MetricSet
from keventing.ops import ops_routes
from keventing.resources import Resource

TAIL_TARGET_KINDS = ("Broker", "KafkaChannel", "InMemoryChannel", "IntegrationSink", "KafkaSink")
KEEPALIVE_SECONDS = 15.0
DEAD_LETTER_EVENTS = 10


class ConsoleMetrics(MetricSet):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.tails = Gauge(
            "keventing_console_tails", "Live tails open (each holds a Kafka consumer)", registry=registry
        )
        self.tailed = Counter(
            "keventing_console_tailed_events_total", "Events sent to live tails", registry=registry
        )
        self.refused = Counter(
            "keventing_console_tails_refused_total",
            "Live tails refused: KEVENTING_CONSOLE_MAX_TAILS open",
            registry=registry,
        )


def _namespace(request: Request) -> str | None:
    """``?namespace=NS`` shows one namespace; without it, every namespace."""
    return request.query_params.get("namespace") or None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Console:
    """The console's state (resources, contract, flows) and its Starlette app."""

    def __init__(
        self,
        settings: ConsoleSettings,
        resources: ResourceView | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.settings = settings
        self.view: ResourceView = resources or (
            ClusterResources(settings) if settings.kubernetes else StoreResources(settings)
        )
        self.contract = ContractView(settings)
        self.meter = FlowMeter(settings, lambda: self.contract.entries, settings.refresh_seconds)
        self.metrics = ConsoleMetrics.of(registry)
        self._open_tails = 0
        self._dead_letters: tuple[float, list[DeadLetters]] = (0.0, [])
        self.app = Starlette(
            routes=[
                Route("/", self.page),
                Route("/graph.svg", self.graph_svg),
                Route("/resources.html", self.resources_html),
                Route("/deadletters.html", self.dead_letters_html),
                Route("/api/topology", self.topology_json),
                Route("/api/resources", self.resources_json),
                Route("/api/deadletters", self.dead_letters_json),
                Route("/api/filter", self.check_filter),
                Route("/api/events", self.events),
                *ops_routes(self.ready),
            ]
        )

    @property
    def mode(self) -> str:
        return "Kubernetes" if self.settings.kubernetes else "local store"

    def ready(self) -> bool:
        return self.view.synced and self.contract.synced

    async def run(self) -> None:
        await asyncio.gather(self.view.run(), self.contract.run(), self.meter.run())

    # ------------------------------------------------------------------------------------ views

    def resources(self, namespace: str | None = None) -> list[Resource]:
        return [r for r in self.view.resources() if namespace is None or r.namespace == namespace]

    def topology(self, namespace: str | None = None) -> Topology:
        return build_topology(self.resources(namespace), self.meter.flows, self.meter.ingress_rates)

    def tail_targets(self, namespace: str | None = None) -> list[Ingress]:
        entries = self.contract.entries.values()
        found = [e.ingress for e in entries if e.ingress is not None and e.ingress.topic]
        return sorted(
            (
                i
                for i in found
                if i.kind in TAIL_TARGET_KINDS and (namespace is None or i.namespace == namespace)
            ),
            key=lambda i: i.id,
        )

    async def dead_letters(self, namespace: str | None = None) -> list[DeadLetters]:
        """Every Trigger's and Subscription's dead-letter sink (of ``namespace``), with its last events where
        it is on Kafka."""
        return [s for s in await self._all_dead_letters() if namespace is None or s.namespace == namespace]

    async def _all_dead_letters(self) -> list[DeadLetters]:
        # Cached for one refresh interval, so that many open pages cost one read.
        at, cached = self._dead_letters
        if time.monotonic() - at < self.settings.refresh_seconds:
            return cached
        entries = self.contract.entries
        sinks: list[DeadLetters] = []
        read: dict[str, tuple[list[Any], str | None]] = {}
        for entry in sorted(entries.values(), key=lambda e: e.id):
            egress = entry.egress
            if egress is None or not egress.delivery.dead_letter_url:
                continue
            ingress = dead_letter_ingress(entries, egress.delivery.dead_letter_url)
            sink = DeadLetters(
                egress.id,
                egress.namespace,
                egress.delivery.dead_letter_url,
                ingress.topic if ingress else None,
            )
            if ingress is not None:
                if ingress.topic not in read:
                    try:
                        connection = connection_of(self.settings, ingress.connection)
                        read[ingress.topic] = (
                            await recent(connection, ingress.topic, DEAD_LETTER_EVENTS),
                            None,
                        )
                    except TailError as err:
                        read[ingress.topic] = ([], str(err))
                sink.events, sink.error = read[ingress.topic]
            sinks.append(sink)
        self._dead_letters = (time.monotonic(), sinks)
        return sinks

    # ------------------------------------------------------------------------------------ routes

    async def page(self, request: Request) -> Response:
        namespace = _namespace(request)
        targets = [(i.id, f"{i.kind} {i.namespace}/{i.name}") for i in self.tail_targets(namespace)]
        ctx = PageContext(
            self.mode, self.settings.instance, targets, int(self.settings.refresh_seconds * 1000), namespace
        )
        body = render_page(
            ctx,
            self.topology(namespace),
            self.resources(namespace),
            render_dead_letters(await self.dead_letters(namespace)),
        )
        return HTMLResponse(body)

    async def graph_svg(self, request: Request) -> Response:
        return Response(svg_of(self.topology(_namespace(request))), media_type="image/svg+xml")

    async def resources_html(self, request: Request) -> Response:
        return HTMLResponse(render_resources(self.resources(_namespace(request))))

    async def dead_letters_html(self, request: Request) -> Response:
        return HTMLResponse(render_dead_letters(await self.dead_letters(_namespace(request))))

    async def topology_json(self, request: Request) -> Response:
        return JSONResponse(self.topology(_namespace(request)).to_json())

    async def resources_json(self, request: Request) -> Response:
        return JSONResponse({"items": [r.display_document() for r in self.resources(_namespace(request))]})

    async def dead_letters_json(self, request: Request) -> Response:
        sinks = await self.dead_letters(_namespace(request))
        return JSONResponse(
            {
                "items": [
                    {
                        "egress": s.egress,
                        "url": s.url,
                        "topic": s.topic,
                        "error": s.error,
                        "events": [e.to_json() for e in s.events],
                    }
                    for s in sinks
                ]
            }
        )

    async def check_filter(self, request: Request) -> Response:
        try:
            cesql_filter(request.query_params.get("expression"))
        except FilterError as err:
            return _error(400, f"invalid CESQL filter: {err}")
        return JSONResponse({"ok": True})

    async def events(self, request: Request) -> Response:
        """``GET /api/events?target=Broker/ns/name&filter=CESQL&last=N``: the target's events as
        Server-Sent Events (a ``ready`` event once the tail is positioned, then one message per event)."""
        target = request.query_params.get("target", "")
        ingress = next((i for i in self.tail_targets() if i.id == target), None)
        if ingress is None:
            known = ", ".join(i.id for i in self.tail_targets()) or "none yet"
            return _error(404, f"no Broker or channel {target!r} with a topic (known: {known})")
        try:
            matches = cesql_filter(request.query_params.get("filter"))
        except FilterError as err:
            return _error(400, f"invalid CESQL filter: {err}")
        try:
            last = int(request.query_params.get("last", "0"))
        except ValueError:
            return _error(400, "last: expected a whole number of events")
        if not 0 <= last <= 500:
            return _error(400, "last: between 0 and 500")
        if self._open_tails >= self.settings.max_tails:
            self.metrics.refused.inc()
            return Response(
                f"{self._open_tails} live tails are open (KEVENTING_CONSOLE_MAX_TAILS); try again later",
                status_code=503,
                headers={"Retry-After": "5"},
            )
        connection = connection_of(self.settings, ingress.connection)
        return StreamingResponse(
            self._stream(request, connection, ingress.topic, matches, last),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _stream(
        self, request: Request, connection: Any, topic: str, matches: Any, last: int
    ) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=1000)
        gone = asyncio.Event()

        async def watch() -> None:
            # Starlette notices a client that left only when a write fails; a quiet tail would hold its
            # consumer until the next keepalive. The client's disconnect message ends the tail at once.
            while (await request.receive())["type"] != "http.disconnect":
                pass
            gone.set()

        async def ready() -> None:
            await queue.put(("ready", {"topic": topic}))

        async def pump() -> None:
            # aclosing: cancelled while waiting on the queue, the tail still closes its consumer now.
            try:
                async with contextlib.aclosing(
                    tail(connection, topic, matches, last=last, on_ready=ready)
                ) as events:
                    async for event in events:
                        await queue.put(("message", event.to_json()))
            except TailError as err:
                await queue.put(("failure", {"error": str(err)}))
            except Exception as err:
                await queue.put(("failure", {"error": f"reading {topic} failed: {err!r}"}))

        self._open_tails += 1
        self.metrics.tails.inc()
        tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(watch())]
        try:
            while not gone.is_set():
                get = asyncio.ensure_future(queue.get())
                left = asyncio.ensure_future(gone.wait())
                done, _ = await asyncio.wait(
                    {get, left}, timeout=KEEPALIVE_SECONDS, return_when="FIRST_COMPLETED"
                )
                for waiter in (get, left):
                    if waiter not in done:
                        waiter.cancel()
                if get not in done:
                    if not gone.is_set():
                        yield b": keepalive\n\n"  # through proxies that close idle connections
                    continue
                kind, payload = get.result()
                data = orjson.dumps(payload)
                if kind == "message":
                    self.metrics.tailed.inc()
                    yield b"data: " + data + b"\n\n"
                else:
                    yield f"event: {kind}\n".encode() + b"data: " + data + b"\n\n"
                if kind == "failure":
                    return
        finally:
            self._open_tails -= 1
            self.metrics.tails.dec()
            for task in tasks:
                task.cancel()
            # The response's cancel scope cancels this task again at every await once the client is gone:
            # the tail closes its consumer in its own task, shielded, whatever becomes of this one.
            await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
