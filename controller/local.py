"""Local mode: drive the reconciler from the resource store and apply its result to Kafka.

Applies topics first, then the contract, then statuses, so that a Ready status means the data plane has
been told. Only what changed is written: the contract and statuses are compared with what was published.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import orjson
from prometheus_client import Counter, Gauge, Histogram

from controller.reconciler import ControllerConfig, Desired, reconcile
from controller.settings import ControllerSettings
from keventing.contract import ContractEntry
from keventing.kafka.client import admin_client, delete_topic, ensure_topic
from keventing.kafka.compacted import CompactedTopic
from keventing.resources import Resource, ResourceInvalid, Status
from keventing.resources.base import now_rfc3339
from keventing.store import ResourceStore, decode_resource

log = logging.getLogger("keventing.controller")

RECONCILES = Counter("keventing_controller_reconcile_total", "Reconcile passes", ["outcome"])
RECONCILE_SECONDS = Histogram(
    "keventing_controller_reconcile_duration_seconds", "Duration of a reconcile pass"
)
RESOURCES = Gauge("keventing_controller_resources", "Resources known to the controller", ["kind", "ready"])


class LocalController:
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
        try:
            desired = reconcile(self.resources.values(), self.config, self.topic_errors)
            if await self._apply_topics(desired):
                desired = reconcile(self.resources.values(), self.config, self.topic_errors)
            await self._apply_children(desired)
            await self._apply_contract(desired)
            await self._apply_statuses(desired)
            await self._delete_unwanted_topics(desired)
            RECONCILES.labels("success").inc()
        except Exception:
            RECONCILES.labels("error").inc()
            log.exception("reconcile failed; retrying shortly")
            await asyncio.sleep(1)
            self._changed.set()
        finally:
            RECONCILE_SECONDS.observe(time.perf_counter() - started)
            self._count(desired if "desired" in locals() else Desired())

    async def _apply_topics(self, desired: Desired) -> bool:
        """Create missing topics; True when a creation failed or recovered (statuses must be recomputed)."""
        changed = False
        async with admin_client(self.settings.kafka_bootstrap_servers) as admin:
            existing = set(await admin.list_topics())
            for name, spec in desired.topics.items():
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

    async def _delete_unwanted_topics(self, desired: Desired) -> None:
        unwanted = self.managed_topics - set(desired.topics)
        if not unwanted:
            return
        async with admin_client(self.settings.kafka_bootstrap_servers) as admin:
            for name in sorted(unwanted):
                await delete_topic(admin, name)
                log.info("deleted topic", extra={"topic": name})
                self.managed_topics.discard(name)

    async def _apply_children(self, desired: Desired) -> None:
        """Store the resources the controller generates (flows' channels and subscriptions) and delete the
        ones it generated before but no longer wants — Kubernetes' owner references, done locally."""
        for child_key, child in desired.children.items():
            current = self.resources.get(str(child_key))
            if current is not None and _owned_part(current) == _owned_part(child):
                continue
            meta = child.metadata
            if current is not None:
                meta.uid = current.metadata.uid
                meta.creationTimestamp = current.metadata.creationTimestamp
                meta.generation = current.metadata.generation + 1
            else:
                meta.uid = meta.uid or str(uuid.uuid4())
                meta.creationTimestamp = meta.creationTimestamp or now_rfc3339()
                meta.generation = 1
            await self.store.resources.put(str(child_key), orjson.dumps(child.to_document(with_status=False)))
        wanted = {str(k) for k in desired.children}
        for key, resource in list(self.resources.items()):
            if key not in wanted and any(ref.controller for ref in resource.metadata.ownerReferences):
                await self.store.resources.put(key, None)
                log.info("deleted generated resource", extra={"resource": key})

    async def _apply_contract(self, desired: Desired) -> None:
        wanted = {key: entry.encode() for key, entry in desired.contract.items()}
        for key, value in wanted.items():
            if self.published_contract.get(key) != value:
                await self.contract.put(key, value)
                self.published_contract[key] = value
        for key in set(self.published_contract) - set(wanted):
            await self.contract.put(key, None)
            del self.published_contract[key]

    async def _apply_statuses(self, desired: Desired) -> None:
        wanted: dict[str, bytes] = {}
        for resource_key, status in desired.statuses.items():
            previous = self.published_statuses.get(str(resource_key))
            status = _keep_transition_times(status, previous)
            wanted[str(resource_key)] = orjson.dumps(status.model_dump(mode="json", exclude_none=True))
        for key, value in wanted.items():
            if self.published_statuses.get(key) != value:
                await self.store.statuses.put(key, value)
                self.published_statuses[key] = value
        for key in set(self.published_statuses) - set(wanted):
            await self.store.statuses.put(key, None)
            del self.published_statuses[key]

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


def _keep_transition_times(status: Status, previous: bytes | None) -> Status:
    """A condition keeps its lastTransitionTime until its status changes (Knative's semantics)."""
    before = {}
    if previous is not None:
        before = {c["type"]: c for c in orjson.loads(previous).get("conditions", [])}
    now = now_rfc3339()
    conditions = []
    for condition in status.conditions:
        old = before.get(condition.type)
        same = old is not None and old.get("status") == condition.status
        when = old.get("lastTransitionTime") if same and old else now
        conditions.append(condition.model_copy(update={"lastTransitionTime": when}))
    return status.model_copy(update={"conditions": conditions})
