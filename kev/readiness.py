"""Waiting for resources to become usable: Ready statuses and egress consumer groups in position."""

from __future__ import annotations

import asyncio
import time

from aiokafka.errors import KafkaError

from keventing import naming
from keventing.kafka.client import admin_client, group_positioned
from keventing.resources import Parallel, Resource, ResourceKey, Sequence, Subscription, Trigger
from keventing.settings import CommonSettings
from keventing.store import ResourceStore


class NotReady(TimeoutError):
    pass


async def wait_ready(settings: CommonSettings, key: ResourceKey, timeout: float = 60.0) -> Resource:
    """Wait until the resource's Ready condition is True and the consumer groups of its egresses are placed."""
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
                if await _egresses_positioned(settings, store, last):
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


async def _egresses_positioned(settings: CommonSettings, store: ResourceStore, resource: Resource) -> bool:
    """True once every consumer group the resource's egresses use has its starting position."""
    placements = await _egress_placements(store, resource)
    if not placements:
        return True
    async with admin_client(settings.kafka_connection) as admin:
        try:
            for group, topic in placements:
                if not await group_positioned(admin, group, topic):
                    return False
        except KafkaError:  # e.g. the group coordinator is still being elected
            return False
    return True


async def _egress_placements(store: ResourceStore, resource: Resource) -> list[tuple[str, str]]:
    """(consumer group, topic) of each egress of ``resource``: a Trigger's, a Subscription's, or those of the
    Subscriptions a Sequence or Parallel owns."""
    namespace = resource.namespace
    if isinstance(resource, Trigger):
        # The controller says which (an upgraded Trigger may keep a name from before names were injective).
        annotations = resource.status.annotations or {}
        if naming.BOOTSTRAP_SERVERS_ANNOTATION in annotations:
            # On its Broker's own cluster, whose credentials only the services hold; the controller
            # positioned the group there before it said Ready.
            return []
        return [
            (
                annotations.get(naming.GROUP_ANNOTATION) or naming.trigger_group(namespace, resource.name),
                annotations.get(naming.TOPIC_ANNOTATION)
                or naming.broker_topic(resource.broker_namespace, resource.broker_name),
            )
        ]
    if isinstance(resource, Subscription):
        channel = resource.spec.channel.name
        uid = resource.metadata.uid or str(resource.key)
        # The controller says which (a Channel's Subscriptions read its backing channel's topic, of the kind
        # its template names); a status from before it said so: the channel kind the Subscription names.
        annotations = resource.status.annotations or {}
        return [
            (
                annotations.get(naming.GROUP_ANNOTATION)
                or naming.subscription_group(resource.channel_namespace, channel, uid),
                annotations.get(naming.TOPIC_ANNOTATION)
                or naming.channel_topic(resource.channel_namespace, channel, resource.spec.channel.kind),
            )
        ]
    if isinstance(resource, Sequence | Parallel):
        placements = []
        for child in await store.list(Subscription.KIND, namespace):
            owner = next((ref for ref in child.metadata.ownerReferences if ref.controller), None)
            if owner is not None and (owner.kind, owner.name) == (resource.KIND, resource.name):
                placements.extend(await _egress_placements(store, child))
        return placements
    return []
