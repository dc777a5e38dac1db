"""Triggers on one Broker share one fetch per partition, yet each keeps its own group, pace and position."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from conftest import Kev, Reaction, RecordingSink
from helpers import broker_doc, trigger_doc

from keventing import naming

MATCH, OTHER = "dev.test.shared", "dev.test.other"
ATTACHED = "keventing_dispatcher_shared_fetch_attached_partitions"
DETACHED = "keventing_dispatcher_shared_fetch_detached_total"
PARTITIONS = 3  # the session stack's KEVENTING_DEFAULT_TOPIC_PARTITIONS


def _ready(kev: Kev, ns: str, *triggers: dict) -> None:
    kev.apply(broker_doc("default", ns), *triggers)
    for trigger in triggers:
        kev.wait_ready("Trigger", trigger["metadata"]["name"], ns)


def _trigger(ns: str, name: str, uri: str, event_type: str, **spec: object) -> dict:
    return trigger_doc(name, ns, "default", uri, filter={"attributes": {"type": event_type}}, **spec)


def _produce(kafka: str, topic: str, events: list[tuple[str, str]], partition: int | None = None) -> None:
    """Write binary-mode CloudEvents (id, type) straight to the Broker's topic: faster than the ingress."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=5)
        await producer.start()
        try:
            for event_id, event_type in events:
                headers = [
                    ("ce_specversion", b"1.0"),
                    ("ce_id", event_id.encode()),
                    ("ce_type", event_type.encode()),
                    ("ce_source", b"/shared"),
                ]
                await producer.send(topic, b"{}", partition=partition, headers=headers)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def _sample(kev: Kev, metric: str, **labels: str) -> float:
    text = kev.http.get(f"http://127.0.0.1:{kev.stack.dispatcher_port}/metrics").text
    for line in text.splitlines():
        if line.startswith(metric + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _unique(sink: RecordingSink, path: str) -> set[str]:
    return {r.headers.get("ce-id", "") for r in sink.requests(path)}


def _committed(kafka: str, topic: str, groups: list[str]) -> dict[str, int]:
    """Each group's committed offsets on ``topic``, summed over partitions, and the topic's end (``""``)."""

    async def run() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            out = {}
            for group in groups:
                offsets = await admin.list_consumer_group_offsets(group)
                out[group] = sum(m.offset for tp, m in offsets.items() if tp.topic == topic)
            [described] = await admin.describe_topics([topic])
            partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        finally:
            await admin.close()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        out[""] = sum(ends.values())
        return out

    return asyncio.run(run())


def _warm_up(kev: Kev, sink: RecordingSink, kafka: str, topic: str, paths: dict[str, str]) -> None:
    """One event of each type, awaited at every Trigger: then every Trigger is assigned and attached."""
    _produce(kafka, topic, [("warm-match", MATCH), ("warm-other", OTHER)])
    for path, event_type in paths.items():
        sink.wait_for(path, 1, timeout=60)
        assert _unique(sink, path) == {"warm-match" if event_type == MATCH else "warm-other"}


def test_triggers_on_one_broker_get_every_matching_event_from_records_fetched_once(
    kev: Kev, sink: RecordingSink, ns: str, kafka: str
) -> None:
    paths = {f"{ns}/t{i}": MATCH for i in range(3)} | {f"{ns}/other": OTHER}
    triggers = [_trigger(ns, path.rsplit("/", 1)[1], sink.url(path), kind) for path, kind in paths.items()]
    _ready(kev, ns, *triggers)
    topic = naming.broker_topic(ns, "default")
    _warm_up(kev, sink, kafka, topic, paths)
    time.sleep(1)  # every partition of every Trigger attached (the warm-up may have come on one)
    fetched_before = _sample(kev, "keventing_dispatcher_shared_fetch_records_total", topic=topic)
    matching = [(f"m-{i}", MATCH) for i in range(300)]
    others = [(f"o-{i}", OTHER) for i in range(100)]
    _produce(kafka, topic, matching + others)
    for path, kind in paths.items():
        expected = {e for e, _ in (matching if kind == MATCH else others)}
        kev.wait_for(
            lambda path=path, expected=expected: _unique(sink, path) >= expected, 60, f"{path}'s events"
        )
        assert len(_unique(sink, path)) == len(expected) + 1, "each Trigger gets what its filter selects"
    fetched = _sample(kev, "keventing_dispatcher_shared_fetch_records_total", topic=topic) - fetched_before
    assert fetched == 400, "each record is fetched once for all four Triggers, not once per Trigger"


def test_each_trigger_commits_its_own_consumer_group_to_the_end_of_the_topic(
    kev: Kev, sink: RecordingSink, ns: str, kafka: str
) -> None:
    paths = {f"{ns}/a": MATCH, f"{ns}/b": OTHER}
    _ready(kev, ns, *(_trigger(ns, path[-1], sink.url(path), kind) for path, kind in paths.items()))
    topic = naming.broker_topic(ns, "default")
    _warm_up(kev, sink, kafka, topic, paths)
    _produce(kafka, topic, [(f"c-{i}", MATCH) for i in range(200)])
    sink.wait_for(f"{ns}/a", 201, timeout=60)
    groups = [naming.trigger_group(ns, "a"), naming.trigger_group(ns, "b")]

    def at_end() -> bool:
        committed = _committed(kafka, topic, groups)
        return all(committed[group] == committed[""] for group in groups)

    # The Trigger that selects nothing moves its group too: lag per Trigger, as kafka-consumer-groups shows it.
    kev.wait_for(at_end, 30, "both groups committed at the end of the topic")
    assert _committed(kafka, topic, groups)[""] == 202


def test_a_backed_up_trigger_reads_alone_and_neither_stalls_the_others_nor_skips_an_event(
    kev: Kev, sink: RecordingSink, ns: str, kafka: str
) -> None:
    slow, fast = f"{ns}/slow", f"{ns}/fast"
    sink.respond_with(slow, lambda received: Reaction(202, delay=2.0))  # 25 events/s at 50 in flight
    _ready(
        kev,
        ns,
        _trigger(ns, "slow", sink.url(slow), MATCH, delivery={"timeout": "PT30S"}),
        _trigger(ns, "fast", sink.url(fast), MATCH),
    )
    topic = naming.broker_topic(ns, "default")
    ids = [f"s-{i}" for i in range(2500)]  # one partition: more than its backlog may hold
    started = time.monotonic()
    _produce(kafka, topic, [(i, MATCH) for i in ids], partition=0)
    kev.wait_for(lambda: _unique(sink, fast) >= set(ids), 60, "every event at the fast Trigger")
    took = time.monotonic() - started
    assert len(_unique(sink, slow)) < len(ids) / 2, "the slow Trigger is still far behind"
    assert _sample(kev, DETACHED, namespace_name=ns, name="slow") >= 1, "the slow Trigger read alone"
    print(f"\nfast Trigger had all {len(ids)} in {took:.1f} s, the slow one {len(_unique(sink, slow))}")
    # Reading alone from where its share ended, the slow Trigger gets every event once it speeds up.
    sink.respond_with(slow, lambda received: Reaction(202))
    kev.wait_for(lambda: _unique(sink, slow) >= set(ids), 120, "every event at the slow Trigger")
    # Caught up, it attaches again: both read from the shared fetch once more.
    for name in ("slow", "fast"):
        kev.wait_for(
            lambda name=name: _sample(kev, ATTACHED, namespace_name=ns, name=name) == PARTITIONS,
            30,
            f"the {name} Trigger back on the shared fetch",
        )
