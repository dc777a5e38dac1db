"""What every scenario stands on: Kafka, keventing's services as real processes, the fast sink, resources.

Kafka is the embedded one (its own data dir and free ports, removed afterwards) unless
``KAFKA_BOOTSTRAP_SERVERS`` names a cluster. Every run uses its own keventing instance name, so its
control-plane topics, brokers and consumer groups never meet anyone else's.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bench.meter import ProcessMeter
from bench.payload import EVENT_TYPE, event_body, kafka_headers
from kev.kafka.embedded import EmbeddedKafka, free_port
from kev.stack import Service, Stack
from keventing import naming
from keventing.kafka.client import admin_client, group_positioned, make_consumer, make_producer
from keventing.resources import ResourceKey, parse_resource
from keventing.settings import CommonSettings
from keventing.store import ResourceStore

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def run_async(coroutine: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coroutine

    return asyncio.run(wrapper())


def broker_doc(namespace: str, name: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {},
    }


def trigger_doc(
    namespace: str, name: str, uri: str, event_type: str | None = None, broker: str = "default"
) -> dict[str, Any]:
    spec: dict[str, Any] = {"broker": broker, "subscriber": {"uri": uri}}
    if event_type is not None:
        spec["filter"] = {"attributes": {"type": event_type}}
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


class Harness:
    """Starts and stops Kafka, the stack and the sink; creates resources; counts and produces records."""

    def __init__(self, work_dir: Path, receiver_workers: int, partitions: int, log: Callable[[str], None]):
        self.work_dir = work_dir
        self.receiver_workers = receiver_workers
        self.partitions = partitions
        self.log = log
        self.instance = f"bench-{uuid.uuid4().hex[:8]}"
        self.kafka: EmbeddedKafka | None = None
        self.bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        self.stack: Stack | None = None
        self.sink: subprocess.Popen[bytes] | None = None
        self.sink_port = free_port()
        self._extra: list[subprocess.Popen[bytes]] = []

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if not self.bootstrap:
            self.kafka = EmbeddedKafka(
                port=free_port(),
                controller_port=free_port(),
                data_dir=self.work_dir / "kafka",
                heap="1g",
                progress=self.log,
            )
            self.kafka.start(timeout=180)
            self.bootstrap = self.kafka.bootstrap_servers
        self.stack = Stack(
            bootstrap_servers=self.bootstrap,
            log_dir=self.work_dir / "logs",
            instance=self.instance,
            receiver_port=free_port(),
            dispatcher_port=free_port(),
            controller_port=free_port(),
            extra_env={
                "KEVENTING_LOG_LEVEL": "WARNING",
                "KEVENTING_RECEIVER_WORKERS": str(self.receiver_workers),
                "KEVENTING_DEFAULT_TOPIC_PARTITIONS": str(self.partitions),
            },
        )
        self.stack.start_all()
        self.sink = self.spawn([sys.executable, "-m", "bench.sink", "--port", str(self.sink_port)], "sink")
        self.stack.wait_ready(timeout=120)
        _wait_http(f"http://127.0.0.1:{self.sink_port}/_stats/probe", 30)

    def stop(self) -> None:
        for process in [*self._extra, self.sink]:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.stack is not None:
            self.stack.stop_all()
        if self.kafka is not None:
            self.kafka.stop()

    def spawn(self, argv: list[str], name: str, **env: str) -> subprocess.Popen[bytes]:
        """A helper process (sink, ceiling server, baseline consumer) that :meth:`stop` ends."""
        log_dir = self.work_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._extra.append(process)
        return process

    def end(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process in self._extra:
            self._extra.remove(process)

    @property
    def services(self) -> Stack:
        assert self.stack is not None
        return self.stack

    def pid(self, name: str) -> int | None:
        service = self.services.services.get(name)
        if service is None or service.process is None or service.process.poll() is not None:
            return None
        return service.process.pid

    def meter(self) -> ProcessMeter:
        return ProcessMeter(
            {"receiver": lambda: self.pid("receiver"), "dispatcher": lambda: self.pid("dispatcher")}
        )

    def restart(self, name: str) -> Service:
        self.services.stop(name)
        service = self.services.start(self.services.service(name))
        self.services.wait_ready(timeout=120, names=[name])
        return service

    # ------------------------------------------------------------------------------------ resources

    @property
    def settings(self) -> CommonSettings:
        return CommonSettings(KAFKA_BOOTSTRAP_SERVERS=self.bootstrap, KEVENTING_INSTANCE=self.instance)  # type: ignore[call-arg]

    def sink_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.sink_port}/{path}"

    def broker_url(self, namespace: str, name: str = "default") -> str:
        return f"{self.services.ingress_url}/{namespace}/{name}"

    def apply(self, *documents: dict[str, Any]) -> None:
        async def put() -> None:
            store = ResourceStore(self.settings)
            try:
                await store.ensure()
                await store.apply_all([parse_resource(document) for document in documents])
            finally:
                await store.close()

        run_async(put())

    def wait_ready(self, namespace: str, triggers: int = 0, timeout: float = 180.0) -> None:
        """Wait for the namespace's Broker, its ``triggers`` Triggers, and every Trigger's consumer group."""
        run_async(self._wait_ready(namespace, triggers, timeout))

    async def _wait_ready(self, namespace: str, triggers: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        store = ResourceStore(self.settings)
        topic = naming.broker_topic(namespace, "default")
        try:
            while time.monotonic() < deadline:
                found = await store.list(namespace=namespace)
                ready = [
                    r
                    for r in found
                    if r.status.ready and r.status.observedGeneration == r.metadata.generation
                ]
                names = [r.name for r in ready if r.kind == "Trigger"]
                if any(r.kind == "Broker" for r in ready) and len(names) >= triggers:
                    async with admin_client(self.bootstrap) as admin:
                        placed = [
                            await group_positioned(admin, naming.trigger_group(namespace, name), topic)
                            for name in names
                        ]
                    if all(placed):
                        return
                await asyncio.sleep(0.5)
        finally:
            await store.close()
        raise TimeoutError(
            f"namespace {namespace}: Broker and {triggers} Triggers not ready in {timeout:.0f} s"
        )

    def delete(self, namespace: str, triggers: list[str], broker: bool = True) -> None:
        """Delete Triggers (and the Broker, with its topic) so that they cost nothing in later scenarios."""

        async def delete() -> None:
            store = ResourceStore(self.settings)
            try:
                for name in triggers:
                    await store.delete(ResourceKey("Trigger", namespace, name))
                if broker:
                    await store.delete(ResourceKey("Broker", namespace, "default"))
            finally:
                await store.close()

        run_async(delete())

    # ---------------------------------------------------------------------------------------- Kafka

    def partition_ends(self, topic: str) -> dict[TopicPartition, int]:
        """The end offset of every partition of ``topic``."""

        async def ends() -> dict[TopicPartition, int]:
            consumer = make_consumer(self.bootstrap, None)
            await consumer.start()
            try:
                partitions = consumer.partitions_for_topic(topic) or set()
                if not partitions:
                    await consumer._client.force_metadata_update()  # a topic created after start
                    partitions = consumer.partitions_for_topic(topic) or set()
                return dict(await consumer.end_offsets([TopicPartition(topic, p) for p in partitions]))
            finally:
                await _stop(consumer)

        return run_async(ends())

    def topic_size(self, topic: str) -> int:
        """Records on ``topic``: the sum of its partitions' end offsets (no compaction, no deletion)."""
        return sum(self.partition_ends(topic).values())

    def sample_records(
        self, topic: str, count: int = 20
    ) -> list[tuple[list[tuple[str, bytes]], bytes | None]]:
        """The first records of ``topic`` (headers and value), to check what the receiver stored."""

        async def read() -> list[tuple[list[tuple[str, bytes]], bytes | None]]:
            consumer = make_consumer(self.bootstrap, None, auto_offset_reset="earliest")
            await consumer.start()
            try:
                consumer.subscribe([topic])
                out: list[tuple[list[tuple[str, bytes]], bytes | None]] = []
                deadline = time.monotonic() + 15
                while len(out) < count and time.monotonic() < deadline:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        out.extend((list(r.headers), r.value) for r in records)
                return out[:count]
            finally:
                await _stop(consumer)

        return run_async(read())

    def produce(self, topic: str, count: int, prefix: str, matching_every: int = 1) -> float:
        """Put ``count`` binary-mode events on ``topic`` as the receiver would; returns the seconds taken.

        Every ``matching_every``-th event has the benchmark type, the others a type no trigger selects.
        """

        async def fill() -> float:
            producer = make_producer(self.bootstrap, linger_ms=20, compression_type=None)
            await producer.start()
            body = event_body()
            started = time.monotonic()
            try:
                pending = []
                for index in range(count):
                    event_type = EVENT_TYPE if index % matching_every == 0 else EVENT_TYPE + ".other"
                    headers = kafka_headers(f"{prefix}-{index}", event_type)
                    pending.append(await producer.send(topic, value=body, headers=headers))
                    if len(pending) >= 5000:
                        await asyncio.gather(*pending)
                        pending.clear()
                await asyncio.gather(*pending)
            finally:
                await producer.stop()
            return time.monotonic() - started

        return run_async(fill())

    def groups_done(self, namespace: str, names: list[str], ends: dict[TopicPartition, int]) -> bool:
        """Whether every trigger's group committed ``ends`` (the topic's end offsets) on every partition."""

        async def check() -> bool:
            async with admin_client(self.bootstrap) as admin:
                for name in names:
                    try:
                        offsets = await admin.list_consumer_group_offsets(
                            naming.trigger_group(namespace, name)
                        )
                    except KafkaError:  # coordinator not elected or loaded yet
                        return False
                    for tp, end in ends.items():
                        meta = offsets.get(tp)
                        if meta is None or meta.offset < end:
                            return False
            return True

        return run_async(check())

    # ----------------------------------------------------------------------------------------- sink

    def sink_stats(self, path: str, reset: bool = False, slow: bool = False) -> dict[str, Any]:
        """What the sink received at ``path``; ``reset`` forgets it afterwards; ``slow`` adds the events over
        10 ms (wall-clock send time and latency, in s)."""
        url = self.sink_url(f"{'_reset' if reset else '_stats'}/{path}{'?slow=1' if slow else ''}")
        with urllib.request.urlopen(url, timeout=10) as response:
            return dict(json.load(response))

    def wait_sink(self, path: str, count: int, timeout: float, idle: float = 10.0) -> dict[str, Any]:
        """Wait until the sink has ``count`` unique events at ``path``, or nothing new came for ``idle`` s."""
        deadline = time.monotonic() + timeout
        last_count, last_change = -1, time.monotonic()
        while True:
            stats = self.sink_stats(path)
            if stats["unique"] >= count:
                return stats
            if stats["count"] != last_count:
                last_count, last_change = stats["count"], time.monotonic()
            now = time.monotonic()
            if now > deadline or now - last_change > idle:
                return stats
            time.sleep(0.1)

    def receiver_accepted(self) -> int | None:
        """202s the receiver counted (its event_count metric), or None when /metrics cannot tell."""
        try:
            with urllib.request.urlopen(f"{self.services.ingress_url}/metrics", timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith("event_count_total{") and 'response_code="202"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)


async def _stop(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer; aiokafka raises CancelledError when it is stopped right after starting."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="keventing-bench-"))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
