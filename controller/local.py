"""Local mode: the adapter that drives the reconciler from the resource store and applies its result to Kafka.

Resources, statuses and the contract live on compacted topics. :class:`LocalController` implements
:class:`controller.adapter.Adapter`; :class:`~controller.adapter.ReconcilePass` orders the writes. Only what
changed is written: the contract and statuses are compared with what was published (``publish_diff``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

import orjson
from prometheus_client import Counter, Gauge, Histogram

from controller.adapter import Observed, ReconcilePass, publish_diff
from controller.conditions import keep_transition_times
from controller.context import ControllerConfig, Desired
from controller.settings import ControllerSettings
from keventing.contract import ContractEntry
from keventing.kafka.client import TopicSpec, admin_client, delete_topic, ensure_topic
from keventing.kafka.compacted import CompactedTopic
from keventing.resources import Condition, Resource, ResourceInvalid, ResourceKey, Status
from keventing.resources.base import now_rfc3339
from keventing.store import ResourceStore, decode_resource

log = logging.getLogger("keventing.controller")

RECONCILES = Counter("keventing_controller_reconcile_total", "Reconcile passes", ["outcome"])
RECONCILE_SECONDS = Histogram(
    "keventing_controller_reconcile_duration_seconds", "Duration of a reconcile pass"
)
RESOURCES = Gauge("keventing_controller_resources", "Resources known to the controller", ["kind", "ready"])


class LocalController:
    """The local-store adapter: follows the resource store and reconciles on every change and resync."""

    def __init__(self, settings: ControllerSettings) -> None:
        self.settings = settings
        self.config = ControllerConfig(
            ingress_url=settings.ingress_url.rstrip("/"),
            internal_ingress_url=settings.internal_ingress_url.rstrip("/")
            if settings.internal_ingress_url
            else None,
            default_partitions=settings.default_partitions,
            default_replication_factor=settings.default_replication_factor,
            event_type_auto_create=settings.event_type_auto_create,
        )
        self.store = ResourceStore(settings)
        self.contract = CompactedTopic(
            settings.kafka_bootstrap_servers,
            settings.contract_topic,
            settings.control_plane_replication_factor,
        )
        self.resources: dict[str, Resource] = {}
        self.published_contract: dict[str, bytes] = {}
        self.published_statuses: dict[str, bytes] = {}
        self.managed_topics: set[str] = set()
        self.topic_errors: dict[str, str] = {}
        self.synced = False
        self._changed = asyncio.Event()

    async def run(self) -> None:
        await self.store.ensure()
        await self.contract.ensure()
        self.published_contract = await self.contract.snapshot()
        self.published_statuses = await self.store.statuses.snapshot()
        self.managed_topics = {t for t in map(_topic_of, self.published_contract.values()) if t}
        follower = asyncio.create_task(self._follow())
        resync = asyncio.create_task(self._resync())
        try:
            while True:
                await self._changed.wait()
                await asyncio.sleep(0.02)  # coalesce a burst of applies into one pass
                self._changed.clear()
                await self._pass()
        finally:
            follower.cancel()
            resync.cancel()
            await self.contract.stop()
            await self.store.close()

    async def _follow(self) -> None:
        async for batch in self.store.resources.follow():
            for key, value in batch:
                if value is None:
                    self.resources.pop(key, None)
                    continue
                try:
                    self.resources[key] = decode_resource(value, semantics=False)
                except (ResourceInvalid, ValueError) as err:
                    log.warning(
                        "ignoring invalid stored resource", extra={"resource": key, "reason": str(err)}
                    )
            self.synced = True
            self._changed.set()

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            self._changed.set()

    async def _pass(self) -> None:
        started = time.perf_counter()
        reconcile_pass = ReconcilePass(self, self.config)
        try:
            await reconcile_pass.run()
            RECONCILES.labels("success").inc()
        except Exception:
            RECONCILES.labels("error").inc()
            log.exception("reconcile failed; retrying shortly")
            await asyncio.sleep(1)
            self._changed.set()
        finally:
            RECONCILE_SECONDS.observe(time.perf_counter() - started)
            self._count(reconcile_pass.desired)

    # ------------------------------------------------------------------------------------- the Adapter

    def observe(self) -> Observed:
        return Observed(list(self.resources.values()), self.topic_errors)

    async def create_topics(self, topics: Mapping[str, TopicSpec]) -> bool:
        changed = False
        async with admin_client(self.settings.kafka_bootstrap_servers) as admin:
            existing = set(await admin.list_topics())
            for name, spec in topics.items():
                self.managed_topics.add(name)
                if name in existing:
                    changed |= self.topic_errors.pop(name, None) is not None
                    continue
                try:
                    await ensure_topic(admin, spec)
                    log.info("created topic", extra={"topic": name, "partitions": spec.partitions})
                    changed |= self.topic_errors.pop(name, None) is not None
                except Exception as err:  # the broker's status says why; the next pass retries
                    self.topic_errors[name] = f"creating topic {name} failed: {err}"
                    changed = True
        return changed

    async def delete_topics(self, wanted: Mapping[str, TopicSpec]) -> None:
        unwanted = self.managed_topics - set(wanted)
        if not unwanted:
            return
        async with admin_client(self.settings.kafka_bootstrap_servers) as admin:
            for name in sorted(unwanted):
                await delete_topic(admin, name)
                log.info("deleted topic", extra={"topic": name})
                self.managed_topics.discard(name)

    async def write_children(self, children: Mapping[ResourceKey, Resource]) -> None:
        """Kubernetes' owner references, done locally: a generated resource is stored like an applied one."""
        for child_key, child in children.items():
            current = self.resources.get(str(child_key))
            if current is not None and _owned_part(current) == _owned_part(child):
                continue
            meta = child.metadata
            if current is not None:
                meta.uid = current.metadata.uid
                meta.creationTimestamp = current.metadata.creationTimestamp
                meta.generation = current.metadata.generation + 1
            else:
                meta.creationTimestamp = meta.creationTimestamp or now_rfc3339()
                meta.generation = 1
            await self.store.resources.put(str(child_key), orjson.dumps(child.to_document(with_status=False)))
        wanted = {str(k) for k in children}
        for key, resource in list(self.resources.items()):
            if key not in wanted and any(ref.controller for ref in resource.metadata.ownerReferences):
                await self.store.resources.put(key, None)
                log.info("deleted generated resource", extra={"resource": key})

    async def publish_contract(self, contract: Mapping[str, ContractEntry]) -> None:
        wanted = {key: entry.encode() for key, entry in contract.items()}
        await _publish(self.contract, self.published_contract, wanted)

    async def write_statuses(self, statuses: Mapping[ResourceKey, Status]) -> None:
        now = now_rfc3339()
        wanted: dict[str, bytes] = {}
        for resource_key, status in statuses.items():
            previous = _conditions_of(self.published_statuses.get(str(resource_key)))
            status = keep_transition_times(status, previous, now)
            wanted[str(resource_key)] = orjson.dumps(status.model_dump(mode="json", exclude_none=True))
        await _publish(self.store.statuses, self.published_statuses, wanted)

    def _count(self, desired: Desired) -> None:
        RESOURCES.clear()
        counts: dict[tuple[str, str], int] = {}
        for key, status in desired.statuses.items():
            label = (key.kind, str(status.ready).lower())
            counts[label] = counts.get(label, 0) + 1
        for (kind, ready), n in counts.items():
            RESOURCES.labels(kind, ready).set(n)


def _owned_part(resource: Resource) -> object:
    """What the controller decides about a generated resource (not uid, timestamps or generation)."""
    return resource.model_dump(
        mode="json", exclude={"status": True, "metadata": {"uid", "creationTimestamp", "generation"}}
    )


def _topic_of(value: bytes) -> str | None:
    entry = ContractEntry.decode(value)
    return entry.ingress.topic if entry.ingress and entry.ingress.owns_topic else None


async def _publish(topic: CompactedTopic, published: dict[str, bytes], wanted: Mapping[str, bytes]) -> None:
    """Write what changed on a compacted topic and tombstone what is gone, keeping ``published`` in step
    with every write (a failed pass leaves it true to what is on the topic)."""
    diff = publish_diff(published, wanted)
    for key, value in diff.write.items():
        await topic.put(key, value)
        published[key] = value
    for key in diff.tombstone:
        await topic.put(key, None)
        del published[key]


def _conditions_of(status: bytes | None) -> list[Condition]:
    """The conditions of a published status."""
    if status is None:
        return []
    return [Condition.model_validate(c) for c in orjson.loads(status).get("conditions", [])]
