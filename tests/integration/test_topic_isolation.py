"""Tenant isolation on a real Kafka: reserved topics refused, adopted topics never deleted, no shared names."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaProducer
from conftest import Kev, RecordingSink
from helpers import broker_doc, kafka_sink_doc, kafka_source_doc, trigger_doc

from controller.dataplane import KafkaDataPlane
from controller.reconciler import ControllerConfig, reconcile
from keventing.contract import ContractEntry, Ingress
from keventing.contractauth import ContractKeys, new_key
from keventing.kafka.client import TopicSpec, admin_client, ensure_topic
from keventing.kafka.compacted import CompactedTopic, Record
from keventing.resources import Condition, parse_resource
from keventing.settings import CommonSettings

EVENT = {
    "ce-specversion": "1.0",
    "ce-id": "hijack-1",
    "ce-type": "dev.test.hijack",
    "ce-source": "/attacker",
    "content-type": "application/json",
}
ORDERED = {"kafka.eventing.knative.dev/delivery.order": "ordered"}


def _topics(kafka: str) -> set[str]:
    async def run() -> set[str]:
        async with admin_client(kafka) as admin:
            return set(await admin.list_topics())

    return asyncio.run(run())


def _create_topic(kafka: str, topic: str) -> None:
    async def run() -> None:
        async with admin_client(kafka) as admin:
            await ensure_topic(admin, TopicSpec(topic, 1, 1))

    asyncio.run(run())


def _wait_refused(kev: Kev, kind: str, name: str, ns: str) -> Condition:
    def refused() -> Condition | None:
        found = kev.get(kind, name, ns)
        ready = found.status.condition("Ready") if found is not None else None
        return ready if ready is not None and ready.status == "False" and ready.reason else None

    return kev.wait_for(refused, what=f"{kind} {name} to be refused")


def test_a_kafka_sink_on_the_contract_topic_is_refused_and_nothing_is_produced_to_it(
    kev: Kev, ns: str, kafka: str
) -> None:
    contract = kev.settings.contract_topic
    kev.apply(
        kafka_sink_doc("hijack", ns, contract, numPartitions=1, replicationFactor=1),
        kafka_source_doc("spy", ns, kafka, [kev.settings.resources_topic], {"uri": "http://127.0.0.1:1/"}),
    )
    ready = _wait_refused(kev, "KafkaSink", "hijack", ns)
    assert ready.reason == "TopicReserved" and contract in (ready.message or "")
    spy = _wait_refused(kev, "KafkaSource", "spy", ns)
    assert spy.reason == "TopicReserved"
    sink = kev.get("KafkaSink", "hijack", ns)
    assert sink is not None and sink.status.address is None
    response = kev.http.post(f"{kev.stack.ingress_url}/sinks/{ns}/hijack", headers=EVENT, content=b"{}")
    assert response.status_code == 404


def test_deleting_a_kafka_sink_never_deletes_a_topic_keventing_did_not_create(
    kev: Kev, ns: str, kafka: str
) -> None:
    existing, created = f"{ns}-existing", f"{ns}-created"
    _create_topic(kafka, existing)
    kev.apply(
        kafka_sink_doc("adopter", ns, existing, numPartitions=1, replicationFactor=1),
        kafka_sink_doc("creator", ns, created, numPartitions=1, replicationFactor=1),
    )
    adopter = kev.wait_ready("KafkaSink", "adopter", ns)
    kev.wait_ready("KafkaSink", "creator", ns)
    topic_ready = adopter.status.condition("TopicReady")
    assert topic_ready is not None and topic_ready.reason == "TopicExisted"
    # Ownership is durable: a restarted controller knows which topic it created, and which it did not.
    kev.stack.stop("controller")
    kev.stack.start(kev.stack.service("controller"))
    kev.stack.wait_ready(60, ["controller"])
    kev.delete("KafkaSink", "adopter", ns)
    kev.delete("KafkaSink", "creator", ns)
    # The creator's deletion is in a pass no earlier than the adopter's: once its topic is gone, both ran.
    kev.wait_for(lambda: created not in _topics(kafka), timeout=60, what="the created topic to be deleted")
    assert existing in _topics(kafka)


def test_brokers_whose_knative_names_collide_keep_their_events_apart(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    # Knative's scheme names both knative-broker-<ns>-x-y (and both Triggers' groups knative-trigger-<ns>-x-y).
    other = f"{ns}-x"
    kev.apply(
        broker_doc("x-y", ns),
        broker_doc("y", other),
        trigger_doc("x-y", ns, "x-y", sink.url(f"{ns}/first"), annotations=ORDERED),
        trigger_doc("y", other, "y", sink.url(f"{ns}/second"), annotations=ORDERED),
    )
    for kind, name, namespace in [("Broker", "x-y", ns), ("Broker", "y", other)]:
        kev.wait_ready(kind, name, namespace)
    kev.wait_ready("Trigger", "x-y", ns)
    kev.wait_ready("Trigger", "y", other)
    key = {"partitionkey": "same"}  # one partition, delivered in order: what is not first never arrives
    assert kev.send(other, "y", "for-second", extensions=key).status_code == 202
    assert kev.send(ns, "x-y", "for-first", extensions=key).status_code == 202
    assert kev.send(other, "y", "second-done", extensions=key).status_code == 202
    sink.wait_for(f"{ns}/first", 1)
    sink.wait_for(f"{ns}/second", 2)
    assert [e.id for e in sink.events(f"{ns}/first")] == ["for-first"]
    assert [e.id for e in sink.events(f"{ns}/second")] == ["for-second", "second-done"]


def test_an_upgraded_controller_keeps_the_broker_topics_it_published_and_records_them(kafka: str) -> None:
    """A controller from before the topic ledger published Broker my-app/default on Knative's name: the new
    one keeps that topic (no data loss), and the ledger it writes says so after another restart."""
    settings = CommonSettings(  # type: ignore[call-arg]
        KAFKA_BOOTSTRAP_SERVERS=kafka, KEVENTING_INSTANCE=f"upgrade-{uuid.uuid4().hex[:8]}"
    )
    legacy = "knative-broker-my-app-default"
    broker = parse_resource(broker_doc("default", "my-app"))
    entry = ContractEntry(
        ingress=Ingress(
            id=str(broker.key),
            kind="Broker",
            namespace="my-app",
            name="default",
            path="/my-app/default",
            topic=legacy,
        )
    )

    async def run() -> tuple[str | None, dict[str, str]]:
        contract = CompactedTopic(kafka, settings.contract_topic)
        await contract.ensure()
        await contract.put(entry.id, entry.encode())
        await contract.stop()
        upgraded = KafkaDataPlane(settings)
        await upgraded.start()
        desired = reconcile([broker], ControllerConfig(), published=upgraded.published)
        await upgraded.stop()
        restarted = KafkaDataPlane(settings)
        await restarted.start()
        await restarted.stop()
        ingress = desired.contract[str(broker.key)].ingress
        return (ingress.topic if ingress else None), restarted.topic_owners

    topic, owners = asyncio.run(run())
    assert topic == legacy
    assert owners == {legacy: "Broker/my-app/default"}


def test_an_external_topic_broker_delivers_from_its_topic_and_leaves_it_when_deleted(
    kev: Kev, ns: str, kafka: str, sink: RecordingSink
) -> None:
    topic = f"external-orders-{uuid.uuid4().hex[:8]}"
    _create_topic(kafka, topic)
    broker = broker_doc("default", ns)
    broker["metadata"]["annotations"] = {"kafka.eventing.knative.dev/external.topic": topic}
    path = f"{ns}/external"
    kev.apply(broker, trigger_doc("t", ns, "default", sink.url(path)))
    ready = kev.wait_ready("Broker", "default", ns)
    assert ready.status.annotations == {"kafka.eventing.knative.dev/topic": topic}
    kev.wait_ready("Trigger", "t", ns)
    assert kev.send(ns, "default", "external-1").status_code == 202
    assert [r.event.id for r in sink.wait_for(path, 1) if r.event] == ["external-1"]
    # No topic of its own was made, and deleting the Broker leaves the external topic where it was.
    assert not {t for t in _topics(kafka) if t.startswith("knative-broker") and ns in t}
    kev.delete("Broker", "default", ns)
    # A Broker applied after the deletion is Ready once a pass ran after it: the pass that would have
    # deleted the topic.
    kev.apply(broker_doc("later", ns))
    kev.wait_ready("Broker", "later", ns)
    assert topic in _topics(kafka)


def _contract_records(kev: Kev) -> dict[str, Record]:
    """The last record of each key on the stack's contract topic."""

    async def run() -> dict[str, Record]:
        records = await CompactedTopic(kev.settings.kafka_connection, kev.settings.contract_topic).records()
        return {record.key: record for record in records}

    return asyncio.run(run())


def _produce(kafka: str, topic: str, key: str, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
    """Write to ``topic`` as any client with access to the cluster could: not through keventing."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka)
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=key.encode(), partition=0, headers=headers or None)
        finally:
            await producer.stop()

    asyncio.run(run())


def _rejected(kev: Kev) -> float:
    url = f"http://127.0.0.1:{kev.stack.dispatcher_port}/metrics"
    lines = kev.http.get(url).text.splitlines()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("keventing_contract_rejected_total{")
    )


def test_a_forged_contract_entry_redirecting_a_trigger_is_not_applied_and_is_repaired(
    kev: Kev, sink: RecordingSink, ns: str, kafka: str
) -> None:
    """Finding 1: whoever can produce to the contract topic outside keventing rewrites another namespace's
    Trigger to deliver to their own URL. The dispatcher applies only what the controller signed (a forged
    value, a value tagged with another key, an unsigned tombstone) and the controller writes its own back."""
    real, attacker = f"{ns}/real", f"{ns}/attacker"
    kev.apply(broker_doc("default", ns), trigger_doc("victim", ns, "default", sink.url(real)))
    kev.wait_ready("Broker", "default", ns)
    kev.wait_ready("Trigger", "victim", ns)
    assert kev.send(ns, "default", "before").status_code == 202
    sink.wait_for(real, 1)
    key, topic = f"Trigger/{ns}/victim", kev.settings.contract_topic
    published = _contract_records(kev)[key]
    assert published.value is not None
    entry = ContractEntry.decode(published.value)
    assert entry.egress is not None
    forged = entry.model_copy(
        update={"egress": entry.egress.model_copy(update={"destination": sink.url(attacker)})}
    ).encode()
    rejected = _rejected(kev)

    _produce(kafka, topic, key, forged, [])
    _produce(kafka, topic, key, forged, ContractKeys([new_key().encode()]).headers(topic, key, forged))
    _produce(kafka, topic, key, None, [])
    ids = [f"after-{n}" for n in range(5)]
    for event_id in ids:
        assert kev.send(ns, "default", event_id).status_code == 202
        time.sleep(0.2)

    sink.wait_for(real, 1 + len(ids))
    kev.wait_for(lambda: _rejected(kev) >= rejected + 3, 10, "the dispatcher to count the forged records")
    keys = kev.settings.contract_keys()
    kev.wait_for(
        lambda: (
            (last := _contract_records(kev)[key]).value == published.value
            and list(last.headers) == list(published.headers)
            and keys.verify(topic, key, last.value, last.headers) is None
        ),
        10,
        "the controller to write its own entry back",
    )
    assert kev.send(ns, "default", "repaired").status_code == 202
    sink.wait_for(real, 2 + len(ids))
    time.sleep(1.0)
    assert sink.requests(attacker) == []
    assert {e.id for e in sink.events(real)} == {"before", *ids, "repaired"}
