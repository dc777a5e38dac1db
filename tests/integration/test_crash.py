"""Nothing accepted is lost when processes die: SIGKILLed dispatchers, a dispatcher leaving the group,
and Kafka itself going away. Each test runs a keventing stack of its own (real processes)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from conftest import Kev, Reaction, RecordingSink
from helpers import broker_doc, trigger_doc

from kev.kafka.embedded import EmbeddedKafka, free_port
from kev.stack import Stack


def _stack(bootstrap: str, log_dir: Path, **env: str) -> Stack:
    return Stack.on_free_ports(
        bootstrap, log_dir, "crash", {"KEVENTING_DEFAULT_TOPIC_PARTITIONS": "6", **env}
    )


@pytest.fixture
def own_stack(kafka: str, tmp_path: Path) -> Iterator[Stack]:
    stack = _stack(kafka, tmp_path / "logs")
    stack.start_all(("controller", "receiver"))
    try:
        stack.wait_ready(90)
        yield stack
    finally:
        stack.stop_all()


def _start_dispatcher(stack: Stack, name: str) -> None:
    service = stack.service("dispatcher", port=free_port())
    service.name = name
    stack.start(service)
    stack.wait_ready(60, [name])


def _publish(url: str, ids: list[str], concurrency: int = 32) -> list[str]:
    """POST every event; return the ids that got 202."""

    async def run() -> list[str]:
        accepted: list[str] = []
        queue = list(reversed(ids))
        async with httpx.AsyncClient(timeout=30) as client:

            async def worker() -> None:
                while queue:
                    event_id = queue.pop()
                    headers = {
                        "ce-specversion": "1.0",
                        "ce-id": event_id,
                        "ce-type": "dev.test.crash",
                        "ce-source": "/crash",
                        "content-type": "application/json",
                    }
                    response = await client.post(url, headers=headers, content=b'{"n":1}')
                    if response.status_code == 202:
                        accepted.append(event_id)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return accepted

    return asyncio.run(run())


def _unique(sink: RecordingSink, path: str) -> set[str]:
    return {r.headers.get("ce-id", "") for r in sink.requests(path)}


def _wait_unique(sink: RecordingSink, path: str, count: int, timeout: float) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = _unique(sink, path)
        if len(got) >= count:
            return got
        time.sleep(0.1)
    raise AssertionError(
        f"only {len(_unique(sink, path))} of {count} distinct events arrived within {timeout} s"
    )


def test_sigkilled_dispatcher_loses_nothing(own_stack: Stack, sink: RecordingSink, ns: str) -> None:
    kev = Kev(own_stack)
    path = f"{ns}/crash"
    sink.respond_with(path, lambda received: Reaction(202, delay=0.05))
    _start_dispatcher(own_stack, "dispatcher")
    kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", sink.url(path)))
    kev.wait_ready("Trigger", "t", ns)
    # Publish while no dispatcher runs, so that the kills below land in the middle of delivery.
    own_stack.stop("dispatcher")
    ids = [f"e-{i}" for i in range(5000)]
    accepted = _publish(kev.broker_url(ns, "default"), ids)
    assert len(accepted) == len(ids)
    _start_dispatcher(own_stack, "dispatcher")
    for threshold in (1000, 3000):
        _wait_unique(sink, path, threshold, 60)
        own_stack.kill("dispatcher")
        assert len(_unique(sink, path)) < len(ids), "the kill must happen mid-stream"
        _start_dispatcher(own_stack, "dispatcher")
    got = _wait_unique(sink, path, len(ids), 180)
    assert got >= set(ids)
    total = len(sink.requests(path))
    print(f"\n5000 events, dispatcher SIGKILLed twice: {total} deliveries, {total - len(got)} duplicates")
    assert total - len(got) < 2000, (
        "a restart resumes from committed offsets, not from the start of the topic"
    )


def test_two_dispatchers_share_a_trigger_and_survive_losing_one(
    own_stack: Stack, sink: RecordingSink, ns: str
) -> None:
    kev = Kev(own_stack)
    path = f"{ns}/pair"
    sink.respond_with(path, lambda received: Reaction(202, delay=0.1))
    _start_dispatcher(own_stack, "dispatcher-a")
    _start_dispatcher(own_stack, "dispatcher-b")
    kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", sink.url(path)))
    kev.wait_ready("Trigger", "t", ns)
    group = f"knative-trigger-{ns}-t"
    assignments = kev.wait_for(
        lambda: _members_with_partitions(own_stack.bootstrap_servers, group) == 2, 60, "both members"
    )
    assert assignments
    ids = [f"p-{i}" for i in range(3000)]
    accepted: list[str] = []
    publisher = threading.Thread(
        target=lambda: accepted.extend(_publish(kev.broker_url(ns, "default"), ids, 8))
    )
    publisher.start()
    _wait_unique(sink, path, 500, 60)
    own_stack.kill("dispatcher-a")
    assert len(_unique(sink, path)) < len(ids), "the kill must happen mid-stream"
    publisher.join(120)
    assert len(accepted) == len(ids)
    got = _wait_unique(sink, path, len(ids), 180)
    assert got >= set(ids)
    total = len(sink.requests(path))
    print(f"\n3000 events, one of two dispatchers SIGKILLed: {total - len(got)} duplicates")
    assert total - len(got) < 1000


def _members_with_partitions(bootstrap: str, group: str) -> int:
    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            described = await admin.describe_consumer_groups([group])
        except Exception:
            return 0
        finally:
            await admin.close()
        count = 0
        for response in described:
            for g in getattr(response, "groups", []):
                for member in g[-1]:
                    if member[-1]:  # non-empty assignment bytes
                        count += 1
        return count

    return asyncio.run(run())


def test_kafka_outage_loses_no_accepted_event_and_recovers(
    sink: RecordingSink, ns: str, tmp_path: Path
) -> None:
    kafka = EmbeddedKafka(port=free_port(), controller_port=free_port(), data_dir=tmp_path / "kafka")
    kafka.start(timeout=180)
    stack = _stack(kafka.bootstrap_servers, tmp_path / "logs", KEVENTING_PRODUCE_TIMEOUT_SECONDS="3")
    path = f"{ns}/outage"
    try:
        stack.start_all()
        stack.wait_ready(90)
        kev = Kev(stack)
        kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", sink.url(path)))
        kev.wait_ready("Trigger", "t", ns)
        accepted = [
            f"before-{i}" for i in range(20) if kev.send(ns, "default", f"before-{i}").status_code == 202
        ]
        assert len(accepted) == 20
        _wait_unique(sink, path, 20, 30)

        kafka.stop()
        started = time.monotonic()
        during = kev.send(ns, "default", "during-0")
        assert during.status_code == 503
        assert time.monotonic() - started < 3 + 2
        assert "retry-after" in during.headers

        kafka.start(timeout=180)
        deadline = time.monotonic() + 90
        n = 0
        while time.monotonic() < deadline:
            event_id = f"after-{n}"
            n += 1
            if kev.send(ns, "default", event_id).status_code == 202:
                accepted.append(event_id)
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the receiver did not recover after Kafka came back")
        accepted += [
            f"later-{i}" for i in range(20) if kev.send(ns, "default", f"later-{i}").status_code == 202
        ]
        got = _wait_unique(sink, path, 0, 1)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not set(accepted) <= got:
            time.sleep(0.2)
            got = _unique(sink, path)
        assert set(accepted) <= got, f"lost: {sorted(set(accepted) - got)[:10]}"
    finally:
        stack.stop_all()
        kafka.stop()


def test_events_sent_once_a_trigger_is_ready_arrive_even_if_no_dispatcher_ran_yet(
    own_stack: Stack, sink: RecordingSink, ns: str
) -> None:
    """Ready means positioned: the controller commits the new group's start before the Trigger is Ready."""
    kev = Kev(own_stack)
    path = f"{ns}/late-dispatcher"
    kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", sink.url(path)))
    kev.wait_ready("Trigger", "t", ns)
    ids = [f"early-{i}" for i in range(20)]
    assert sorted(_publish(kev.broker_url(ns, "default"), ids)) == sorted(ids)
    _start_dispatcher(own_stack, "dispatcher")
    assert _wait_unique(sink, path, len(ids), 60) >= set(ids)


def test_retries_resume_across_dispatcher_crashes_and_never_exceed_the_policy(
    own_stack: Stack, sink: RecordingSink, ns: str
) -> None:
    """retry: 3 means at most 4 attempts, however often the dispatcher dies in between: the failed attempts
    are committed with the offset, and the next dispatcher goes on counting (Knative's Kafka broker starts
    over, its issue #3746)."""
    kev = Kev(own_stack)
    path, dls = f"{ns}/failing", f"{ns}/dls"
    sink.respond_with(path, lambda received: Reaction(503))
    delivery = {
        "retry": 3,
        "backoffPolicy": "linear",
        "backoffDelay": "PT1S",
        "deadLetterSink": {"uri": sink.url(dls)},
    }
    _start_dispatcher(own_stack, "dispatcher")
    kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", sink.url(path), delivery=delivery))
    kev.wait_ready("Trigger", "t", ns)
    assert kev.send(ns, "default", "doomed").status_code == 202
    for attempts in (1, 2):  # SIGKILL after the first failed attempt, and again after the second
        sink.wait_for(path, attempts, timeout=60)
        time.sleep(0.3)  # the failed attempt's count is committed before the backoff ends
        own_stack.kill("dispatcher")
        _start_dispatcher(own_stack, "dispatcher")
    sink.wait_for(dls, 1, timeout=90)
    time.sleep(1.5)
    assert len(sink.requests(path)) == 4
    [letter] = sink.requests(dls)
    assert letter.headers["ce-id"] == "doomed"
    assert letter.headers["ce-knativeerrorcode"] == "503"


def test_sigkilled_dispatcher_loses_nothing_for_any_trigger_sharing_a_fetch(
    own_stack: Stack, sink: RecordingSink, ns: str
) -> None:
    """Three Triggers read one Broker through the shared fetch; each resumes from its own group's commits."""
    kev = Kev(own_stack)
    paths = [f"{ns}/shared-{i}" for i in range(3)]
    for i, path in enumerate(paths):
        sink.respond_with(path, lambda received, i=i: Reaction(202, delay=0.01 * (i + 1)))
    _start_dispatcher(own_stack, "dispatcher")
    kev.apply(
        broker_doc("default", ns),
        *(trigger_doc(f"t{i}", ns, "default", sink.url(path)) for i, path in enumerate(paths)),
    )
    for i in range(len(paths)):
        kev.wait_ready("Trigger", f"t{i}", ns)
    own_stack.stop("dispatcher")
    ids = [f"s-{i}" for i in range(3000)]
    assert len(_publish(kev.broker_url(ns, "default"), ids)) == len(ids)
    _start_dispatcher(own_stack, "dispatcher")
    _wait_unique(sink, paths[-1], 500, 60)  # the slowest Trigger is mid-stream, the others further on
    own_stack.kill("dispatcher")
    assert len(_unique(sink, paths[-1])) < len(ids), "the kill must happen mid-stream"
    _start_dispatcher(own_stack, "dispatcher")
    for path in paths:
        assert _wait_unique(sink, path, len(ids), 180) >= set(ids), f"{path} lost events"
        duplicates = len(sink.requests(path)) - len(ids)
        print(f"\n{path}: {duplicates} duplicates after a SIGKILL")
        assert duplicates < 1500, "a restart resumes from the group's committed offsets"


def test_triggers_sharing_a_fetch_survive_a_rebalance_when_one_of_two_dispatchers_dies(
    own_stack: Stack, sink: RecordingSink, ns: str
) -> None:
    """Each Trigger's group spreads its partitions over both dispatchers on its own; when one dies, the
    survivor's Triggers attach what they are newly assigned at the committed positions and lose nothing."""
    kev = Kev(own_stack)
    paths = [f"{ns}/pair-{i}" for i in range(3)]
    for path in paths:
        sink.respond_with(path, lambda received: Reaction(202, delay=0.05))
    _start_dispatcher(own_stack, "dispatcher-a")
    _start_dispatcher(own_stack, "dispatcher-b")
    kev.apply(
        broker_doc("default", ns),
        *(trigger_doc(f"t{i}", ns, "default", sink.url(path)) for i, path in enumerate(paths)),
    )
    for i in range(len(paths)):
        kev.wait_ready("Trigger", f"t{i}", ns)
        group = f"knative-trigger-{ns}-t{i}"
        kev.wait_for(
            lambda group=group: _members_with_partitions(own_stack.bootstrap_servers, group) == 2,
            60,
            f"both members in {group}",
        )
    ids = [f"r-{i}" for i in range(2000)]
    accepted: list[str] = []
    publisher = threading.Thread(
        target=lambda: accepted.extend(_publish(kev.broker_url(ns, "default"), ids, 8))
    )
    publisher.start()
    _wait_unique(sink, paths[0], 300, 60)
    own_stack.kill("dispatcher-a")
    assert len(_unique(sink, paths[0])) < len(ids), "the kill must happen mid-stream"
    publisher.join(120)
    assert len(accepted) == len(ids)
    for path in paths:
        assert _wait_unique(sink, path, len(ids), 180) >= set(ids), f"{path} lost events"
        print(f"\n{path}: {len(sink.requests(path)) - len(ids)} duplicates after losing a dispatcher")
