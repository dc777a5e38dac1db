"""A 3-node Kafka loses a node under load: no event that got a 202 is lost (the embedded launcher's cluster)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from conftest import Kev, RecordingSink
from helpers import broker_doc, trigger_doc

from kev.kafka.embedded import EmbeddedKafkaCluster, free_port
from kev.stack import Stack
from keventing import naming

RATE = 1000  # events per second offered
SECONDS = 24
KILL_AT, RESTART_AT = 6.0, 14.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafkaCluster]:
    nodes = EmbeddedKafkaCluster(
        nodes=3,
        ports=[(free_port(), free_port()) for _ in range(3)],
        data_dir=tmp_path_factory.mktemp("kafka-cluster"),
        heap="512m",
        progress=print,
    )
    nodes.start(timeout=240)
    try:
        yield nodes
    finally:
        nodes.stop()


def _partitions(bootstrap: str, topic: str) -> list[dict]:
    async def run() -> list[dict]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            [described] = await admin.describe_topics([topic])
            return list(described["partitions"])
        finally:
            await admin.close()

    return asyncio.run(run())


def _send_paced(url: str, stop_at: float, log: dict[str, tuple[float, int]]) -> None:
    """POST unique events at RATE per second until ``stop_at``; ``log``: id → (time sent, status)."""

    async def run() -> None:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        ) as client:

            async def worker() -> None:
                while (event_id := await queue.get()) is not None:
                    sent = time.monotonic()
                    if sent >= stop_at:
                        continue  # due but never sent: the backlog of a slow moment is not sent late
                    headers = {
                        "ce-specversion": "1.0",
                        "ce-id": event_id,
                        "ce-type": "dev.test.failover",
                        "ce-source": "/failover",
                        "content-type": "application/json",
                    }
                    try:
                        async with client.post(url, headers=headers, data=b'{"n":1}') as response:
                            await response.read()
                            log[event_id] = (sent, response.status)
                    except (aiohttp.ClientError, TimeoutError):
                        log[event_id] = (sent, 0)

            workers = [asyncio.create_task(worker()) for _ in range(64)]
            n, started = 0, time.monotonic()
            while time.monotonic() < stop_at:
                due = started + n / RATE
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
                queue.put_nowait(f"f-{n}")
                n += 1
            for _ in workers:
                queue.put_nowait(None)
            await asyncio.gather(*workers)

    asyncio.run(run())


def test_a_kafka_node_killed_under_load_loses_no_accepted_event(
    cluster: EmbeddedKafkaCluster, sink: RecordingSink, ns: str, tmp_path: Path
) -> None:
    env = {
        "KEVENTING_CONTROL_PLANE_REPLICATION_FACTOR": "3",
        "KEVENTING_DEFAULT_TOPIC_REPLICATION_FACTOR": "3",
        "KEVENTING_DEFAULT_TOPIC_PARTITIONS": "6",
    }
    stack = Stack.on_free_ports(cluster.bootstrap_servers, tmp_path / "logs", "failover", env)
    path = f"{ns}/failover"
    try:
        stack.start_all()
        stack.wait_ready(120)
        kev = Kev(stack)
        kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", sink.url(path)))
        kev.wait_ready("Trigger", "t", ns, timeout=120)
        topic = naming.broker_topic(ns, "default")
        partitions = _partitions(cluster.bootstrap_servers, topic)
        assert partitions and all(len(p["replicas"]) == 3 for p in partitions), partitions
        # The node leading the first partition dies: its partitions must move while events arrive.
        victim = next(n for n in cluster.nodes if n.quorum and n.quorum.node_id == partitions[0]["leader"])

        statuses: dict[str, tuple[float, int]] = {}
        started = time.monotonic()
        sender = threading.Thread(
            target=_send_paced, args=(kev.broker_url(ns, "default"), started + SECONDS, statuses)
        )
        sender.start()
        time.sleep(KILL_AT)
        victim.kill()
        killed_at = time.monotonic()
        time.sleep(RESTART_AT - KILL_AT)
        victim.start(timeout=120)
        back_at = time.monotonic()
        sender.join(SECONDS + 120)
        assert not sender.is_alive()

        accepted = {event_id for event_id, (_, status) in statuses.items() if status == 202}
        refused = {status for _, status in statuses.values() if status != 202}
        down = {event_id for event_id, (at, _) in statuses.items() if killed_at + 3 < at < back_at}
        print(
            f"\n{len(statuses)} sent in {SECONDS} s, {len(accepted)} accepted, others answered {sorted(refused)}; "
            f"{len(down & accepted)} of {len(down)} accepted while node "
            f"{victim.quorum.node_id if victim.quorum else '?'} was down"
        )
        # The sender shares two cores with three Kafka nodes and the stack: a tenth of the rate is still a load.
        assert len(statuses) > SECONDS * RATE / 10, "the sender kept up a load"
        assert len(down) >= 100, "events were offered while the node was down"
        assert refused <= {503}, "Kafka losing a node is a 503 (Retry-After) at worst, never another error"
        assert len(accepted) >= 0.8 * len(statuses)
        assert len(down & accepted) >= 0.5 * len(down), "events are accepted while the node is down"

        deadline = time.monotonic() + 180
        delivered: set[str] = set()
        while time.monotonic() < deadline and not accepted <= delivered:
            delivered = {r.headers.get("ce-id", "") for r in sink.requests(path)}
            time.sleep(0.5)
        missing = accepted - delivered
        assert not missing, f"{len(missing)} accepted events never delivered, e.g. {sorted(missing)[:5]}"
    finally:
        stack.stop_all()
