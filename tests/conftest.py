"""Shared test fixtures: one real Kafka per session, one keventing stack, one recording sink.

Kafka is the embedded one (Apache Kafka's jars on the JVM) unless KAFKA_BOOTSTRAP_SERVERS names a cluster.
Nothing here skips when Kafka is missing: failing to start it fails the session.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import settings as hypothesis_settings

from kev.kafka.embedded import EmbeddedKafka, free_port
from kev.readiness import wait_ready
from kev.stack import ALL_SERVICES, Stack, kev_command
from keventing import events
from keventing.contractauth import new_key
from keventing.kafka.client import make_consumer
from keventing.kafka.connection import KafkaConnection
from keventing.resources import Resource, ResourceKey, parse_resource
from keventing.settings import CommonSettings
from keventing.store import ResourceStore

# The Kubernetes fixtures (kube_cluster, kube_api, namespace, kubectl) and the toolchain build; the secured
# Kafkas (sasl_ssl_kafka, mtls_kafka).
pytest_plugins = ["kube_fixtures", "kafka_security"]

# The contract's key for every service a test runs, in-process or as a stack's process (kev up and the Helm
# chart give them one): the session's own, unless the environment names one.
os.environ.setdefault("KEVENTING_CONTRACT_KEY", new_key())

# Speed is measured in bench/, not asserted in tests: no per-example deadline (a busy machine would trip it).
hypothesis_settings.register_profile("keventing", deadline=None)
hypothesis_settings.load_profile("keventing")

# ------------------------------------------------------------------------------------------ Kafka


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = EmbeddedKafka(
        port=free_port(),
        controller_port=free_port(),
        data_dir=tmp_path_factory.mktemp("kafka"),
        progress=print,
    )
    broker.start(timeout=180)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


# ------------------------------------------------------------------------------------------- sink


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    event: events.Event | None


@dataclass
class Reaction:
    """What the sink answers: a status, a body, headers, after an optional delay."""

    status: int = 202
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Responder = Callable[[Received], Reaction]


class RecordingSink:
    """An HTTP server in its own thread that records every request and answers as each test programs it."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        # With ssl_context the sink serves HTTPS only (the tests of transport encryption).
        self.ssl_context = ssl_context
        self.port = free_port()
        self.received: dict[str, list[Received]] = {}
        self.script: dict[str, list[Reaction]] = {}
        self.responders: dict[str, Responder] = {}
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def program(self, path: str, *reactions: Reaction) -> None:
        """Answer the next requests to ``path`` with ``reactions`` in order, then 202."""
        with self._lock:
            self.script[path.lstrip("/")] = list(reactions)

    def respond_with(self, path: str, responder: Responder) -> None:
        with self._lock:
            self.responders[path.lstrip("/")] = responder

    def requests(self, path: str) -> list[Received]:
        with self._lock:
            return list(self.received.get(path.lstrip("/"), []))

    def events(self, path: str) -> list[events.Event]:
        return [r.event for r in self.requests(path) if r.event is not None]

    def wait_for(self, path: str, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.requests(path)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        got = self.requests(path)
        raise AssertionError(f"sink /{path} got {len(got)} requests, expected {count} within {timeout} s")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        # Stopping waits at most 2 s for handlers still sleeping (a subscriber programmed to hang).
        runner = self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(
            web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=self.ssl_context).start()
        )
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            event: events.Event | None = events.from_http(headers, body)
        except events.InvalidEvent:
            event = None
        received = Received(path, headers, body, time.monotonic(), event)
        with self._lock:
            self.received.setdefault(path, []).append(received)
            script = self.script.get(path)
            reaction = script.pop(0) if script else None
            responder = self.responders.get(path)
            self.in_flight[path] = self.in_flight.get(path, 0) + 1
            self.max_in_flight[path] = max(self.max_in_flight.get(path, 0), self.in_flight[path])
        try:
            if reaction is None:
                reaction = responder(received) if responder else Reaction()
            if reaction.delay:
                await asyncio.sleep(reaction.delay)
            return web.Response(status=reaction.status, body=reaction.body, headers=reaction.headers)
        finally:
            with self._lock:
                self.in_flight[path] -= 1


@pytest.fixture(scope="session")
def sink() -> Iterator[RecordingSink]:
    server = RecordingSink()
    server.start()
    yield server
    server.stop()


# ------------------------------------------------------------------------------------------ stack


@pytest.fixture(scope="session")
def stack(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack.on_free_ports(
        kafka,
        tmp_path_factory.mktemp("logs"),
        "test",
        extra_env={
            "KEVENTING_LOG_LEVEL": "INFO",
            "KEVENTING_DEFAULT_TOPIC_PARTITIONS": "3",
            # PingSource tests move the sources runner's clock with POST /clock.
            "KEVENTING_SOURCES_CLOCK": "manual",
        },
    )
    running.start_all(ALL_SERVICES)
    try:
        running.wait_ready(timeout=90)
        yield running
    finally:
        running.stop_all()


class Kev:
    """The operations a test performs against the running stack, synchronously."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        # The stack's own Kafka connection settings (KAFKA_SECURITY_PROTOCOL, ...) are the tests' too.
        self.settings = CommonSettings(  # type: ignore[call-arg]
            **{k: v for k, v in stack.extra_env.items() if k.startswith("KAFKA_")},
            KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap_servers,
            KEVENTING_INSTANCE=stack.instance,
        )
        self.http = httpx.Client(timeout=30)

    def _store(self, fn: Callable[[ResourceStore], Any]) -> Any:
        async def run() -> Any:
            store = ResourceStore(self.settings)
            try:
                return await fn(store)
            finally:
                await store.close()

        return asyncio.run(run())

    def apply(self, *documents: dict[str, Any]) -> list[Resource]:
        resources = [parse_resource(d) for d in documents]

        async def put(store: ResourceStore) -> list[Resource]:
            return [resource for resource, _ in await store.apply_all(resources)]

        return self._store(put)

    def delete(self, kind: str, name: str, namespace: str) -> bool:
        return self._store(lambda store: store.delete(ResourceKey(kind, namespace, name)))

    def get(self, kind: str, name: str, namespace: str) -> Resource | None:
        return self._store(lambda store: store.get(ResourceKey(kind, namespace, name)))

    def wait_ready(self, kind: str, name: str, namespace: str, timeout: float = 60.0) -> Resource:
        return asyncio.run(wait_ready(self.settings, ResourceKey(kind, namespace, name), timeout))

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`kev ARGS` as a user runs it against the stack (a wide terminal, so that cells are not cut)."""
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.stack.bootstrap_servers,
            "KEVENTING_INSTANCE": self.stack.instance,
            "COLUMNS": "200",
        }
        return subprocess.run(
            [*kev_command(), *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    def broker_url(self, namespace: str, name: str) -> str:
        return f"{self.stack.ingress_url}/{namespace}/{name}"

    def send(
        self, namespace: str, broker: str, event_id: str, type_: str = "dev.test.event", **options: Any
    ) -> httpx.Response:
        """POST a binary-mode event to a broker; extra ce- attributes via ``extensions``, data via ``data``."""
        headers = {
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-type": type_,
            "ce-source": options.get("source", "/tests"),
            "content-type": options.get("content_type", "application/json"),
        }
        for name, value in options.get("extensions", {}).items():
            headers[f"ce-{name}"] = value
        data = options.get("data", b'{"hello":"world"}')
        return self.http.post(self.broker_url(namespace, broker), headers=headers, content=data)


def topic_ids(connection: KafkaConnection, topic: str, expected: int) -> list[str]:
    """The ce_id of every record on ``topic``, once ``expected`` arrived (and a second more) or at most 20 s."""

    async def read() -> list[str]:
        consumer = make_consumer(connection, None, auto_offset_reset="earliest")
        consumer.subscribe([topic])
        await consumer.start()
        ids: list[str] = []
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                ids.extend(dict(r.headers)["ce_id"].decode() for rs in batch.values() for r in rs)
                if len(ids) >= expected:
                    await asyncio.sleep(1.0)
                    batch = await consumer.getmany(timeout_ms=500)
                    ids.extend(dict(r.headers)["ce_id"].decode() for rs in batch.values() for r in rs)
                    break
            return ids
        finally:
            await consumer.stop()

    return asyncio.run(read())


@pytest.fixture(scope="session")
def kev(stack: Stack) -> Kev:
    return Kev(stack)


@pytest.fixture
def ns() -> str:
    """A namespace of the test's own, so its brokers, topics and groups are its own."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach the tail of every service log: the failure's story is usually there."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    stack = item.funcargs.get("stack") if hasattr(item, "funcargs") else None
    kev = item.funcargs.get("kev") if hasattr(item, "funcargs") else None
    running = stack or (kev.stack if kev else None)
    if running is None:
        return
    for service in running.services.values():
        if service.log_path and Path(service.log_path).exists():
            lines = Path(service.log_path).read_text(errors="replace").splitlines()[-40:]
            report.sections.append((f"{service.name} log (tail)", "\n".join(lines)))
