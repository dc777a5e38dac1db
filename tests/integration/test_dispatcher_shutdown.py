"""SIGTERM stops a dispatcher well within Kubernetes' 30 s grace period, whatever it is doing, without
starting new deliveries on the way out and without committing what was not delivered."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from conftest import Kev, Reaction, RecordingSink
from helpers import broker_doc, trigger_doc

from kev.kafka.embedded import EmbeddedKafka, free_port
from kev.stack import Stack

pytestmark = pytest.mark.timeout(400)

# Kubernetes' default terminationGracePeriodSeconds is 30: a dispatcher still running then is SIGKILLed.
WITHIN_GRACE_SECONDS = 20.0
# With a broker that does not answer, every client's stop is given up after 5 s (STOP_TIMEOUT): leaving the
# assignment group (its KafkaSource slots' consumers, then its own) beside a Trigger's final commit and stop,
# 10 s either way. One after the other they took 15.
FROZEN_KAFKA_SECONDS = 13.0


def _stack(bootstrap: str, log_dir: Path) -> Stack:
    return Stack.on_free_ports(bootstrap, log_dir, "shutdown", {"KEVENTING_DEFAULT_TOPIC_PARTITIONS": "3"})


@pytest.fixture
def own_stack(kafka: str, tmp_path: Path) -> Iterator[Stack]:
    stack = _stack(kafka, tmp_path / "logs")
    stack.start_all()
    try:
        stack.wait_ready(90)
        yield stack
    finally:
        stack.stop_all()


def _sigterm(stack: Stack) -> tuple[float, int | None]:
    process = stack.services["dispatcher"].process
    assert process is not None and process.poll() is None
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except Exception:
        process.kill()
        process.wait()
        return time.monotonic() - started, None
    took = time.monotonic() - started
    print(f"the dispatcher exited {took:.1f} s after SIGTERM, status {process.returncode}")
    return took, process.returncode


def _stopped_cleanly(stack: Stack) -> None:
    """Its whole shutdown ran: every Kafka client stopped (asyncio.run used to cancel it halfway)."""
    log = (stack.log_dir / "dispatcher.log").read_text()
    assert "stopped: every consumer and producer closed" in log, log[-3000:]
    assert "Unclosed AIOKafka" not in log, log[-3000:]


def _committed(bootstrap: str, group: str) -> dict[int, int]:
    async def read() -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items()}

    return asyncio.run(read())


def _members(bootstrap: str, group: str) -> int:
    async def read() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_consumer_groups([group])
        finally:
            await admin.close()
        return sum(len(described[-1]) for described in response.groups)

    return asyncio.run(read())


def _wait_requests(sink: RecordingSink, path: str, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(sink.requests(path)) < count:
        assert time.monotonic() < deadline, f"{len(sink.requests(path))} of {count} requests arrived"
        time.sleep(0.05)


def _trigger(kev: Kev, ns: str, url: str) -> None:
    kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", url))
    kev.wait_ready("Trigger", "t", ns)


def test_sigterm_with_deliveries_hanging_starts_no_new_one_and_commits_nothing(
    own_stack: Stack, sink: RecordingSink, ns: str
) -> None:
    kev = Kev(own_stack)
    path = f"{ns}/hang"
    sink.respond_with(path, lambda request: Reaction(202, delay=3600))  # never answers in time
    _trigger(kev, ns, sink.url(path))
    group = f"knative-trigger-{ns}-t"
    before = _committed(own_stack.bootstrap_servers, group)
    assert _members(own_stack.bootstrap_servers, group) == 1
    for i in range(200):
        assert kev.send(ns, "default", f"h-{i}").status_code == 202
    _wait_requests(sink, path, 50)
    time.sleep(1)
    in_flight = len(sink.requests(path))
    took, code = _sigterm(own_stack)
    assert code == 0 and took < WITHIN_GRACE_SECONDS, (code, took)
    time.sleep(1)
    # Cancelled deliveries used to start the next ones on the way out (50 more requests after SIGTERM).
    assert len(sink.requests(path)) == in_flight
    assert _committed(own_stack.bootstrap_servers, group) == before  # nothing was delivered
    # It left the Trigger's group on the way out: the others take its partitions at once, not after its
    # session times out.
    assert _members(own_stack.bootstrap_servers, group) == 0
    _stopped_cleanly(own_stack)


def test_sigterm_with_kafka_not_answering_exits_within_the_grace_period(
    sink: RecordingSink, ns: str, tmp_path: Path
) -> None:
    kafka = EmbeddedKafka(port=free_port(), controller_port=free_port(), data_dir=tmp_path / "kafka")
    kafka.start(timeout=180)
    stack = _stack(kafka.bootstrap_servers, tmp_path / "logs")
    path = f"{ns}/frozen"
    sink.respond_with(path, lambda request: Reaction(202, delay=3600))
    frozen = None
    try:
        stack.start_all()
        stack.wait_ready(90)
        kev = Kev(stack)
        _trigger(kev, ns, sink.url(path))
        for i in range(5):
            assert kev.send(ns, "default", f"f-{i}").status_code == 202
        _wait_requests(sink, path, 5)
        # A hung or partitioned broker: connections stay open and nothing answers (leaving the group waited
        # for aiokafka's 40 s request timeout: 45 s in all, past the grace period).
        frozen = kafka._read_pid()  # noqa: SLF001
        assert frozen is not None
        os.kill(frozen, signal.SIGSTOP)
        time.sleep(1)
        took, code = _sigterm(stack)
        assert code == 0 and took < FROZEN_KAFKA_SECONDS, (code, took)
        _stopped_cleanly(stack)
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        stack.stop_all()
        kafka.stop()
