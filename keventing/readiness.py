"""Waiting for resources to become usable: Ready statuses and egress consumer groups in position."""

from __future__ import annotations

import asyncio
import time

from aiokafka.errors import KafkaError

from keventing import naming
from keventing.kafka.client import admin_client, group_positioned
from keventing.resources import Resource, ResourceKey
from keventing.settings import CommonSettings
from keventing.store import ResourceStore


class NotReady(TimeoutError):
    pass


async def wait_ready(settings: CommonSettings, key: ResourceKey, timeout: float = 60.0) -> Resource:
    """Wait until the resource's Ready condition is True (and, for a Trigger, its consumer group is placed)."""
    store = ResourceStore(settings)
    deadline = time.monotonic() + timeout
    last: Resource | None = None
    try:
        while time.monotonic() < deadline:
            last = await store.get(key)
            if (
                last is not None
                and last.status.ready
                and last.status.observedGeneration == last.metadata.generation
            ):
                if key.kind != "Trigger" or await _trigger_positioned(settings, last):
                    return last
            await asyncio.sleep(0.1)
    finally:
        await store.close()
    reason = ""
    if last is not None:
        ready = last.status.condition("Ready")
        if ready is not None:
            reason = f": {ready.reason}: {ready.message}"
    raise NotReady(f"{key} not ready after {timeout:.0f} s{reason}")


async def _trigger_positioned(settings: CommonSettings, trigger: Resource) -> bool:
    spec = trigger.spec
    topic = naming.broker_topic(trigger.namespace, spec.broker)
    group = naming.trigger_group(trigger.namespace, trigger.name)
    async with admin_client(settings.kafka_bootstrap_servers) as admin:
        try:
            return await group_positioned(admin, group, topic)
        except KafkaError:  # e.g. the group coordinator is still being elected
            return False
