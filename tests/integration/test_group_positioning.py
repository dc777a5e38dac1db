"""New consumer groups are positioned at the end of their topics before the contract names them: a
KafkaSource's too (Knative initializes a new source's offsets), and a cluster that cannot be reached
holds up no other resource's."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer

from controller.dataplane import KafkaDataPlane
from kev.kafka.embedded import free_port
from keventing.contract import Egress
from keventing.kafka.client import TopicSpec, admin_client, ensure_topic
from keventing.kafka.connection import KafkaConnection
from keventing.settings import CommonSettings


def _source(name: str, topic: str, bootstrap: str) -> Egress:
    return Egress(
        id=f"KafkaSource/ns/{name}",
        kind="KafkaSource",
        namespace="ns",
        name=name,
        uid=uuid.uuid4().hex,
        topics=(topic,),
        consumer_group=f"knative-kafka-source-{uuid.uuid4().hex}",
        destination="http://127.0.0.1:1/",
        connection=KafkaConnection(bootstrap_servers=bootstrap),
        consumers=1,
    )


async def test_a_kafka_source_group_is_positioned_though_another_cluster_is_unreachable(kafka: str) -> None:
    topic = f"positioning-{uuid.uuid4().hex[:8]}"
    async with admin_client(kafka) as admin:
        await ensure_topic(admin, TopicSpec(topic, partitions=2, replication_factor=1))
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, b"before", partition=i % 2)
    finally:
        await producer.stop()
    settings = CommonSettings(  # type: ignore[call-arg]
        KAFKA_BOOTSTRAP_SERVERS=kafka, KEVENTING_INSTANCE=f"positioning-{uuid.uuid4().hex[:8]}"
    )
    data_plane = KafkaDataPlane(settings)
    await data_plane.start()
    try:
        away = _source("away", "elsewhere", f"127.0.0.1:{free_port()}")  # nothing listens there
        here = _source("here", topic, kafka)
        await asyncio.wait_for(data_plane.init_offsets([away, here]), 90)
    finally:
        await data_plane.stop()
    async with admin_client(kafka) as admin:
        committed = await admin.list_consumer_group_offsets(here.consumer_group)
    # At the end: what was written before the source existed is not delivered, all after it is.
    assert sorted((tp.partition, meta.offset) for tp, meta in committed.items()) == [(0, 3), (1, 2)]
