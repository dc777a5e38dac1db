"""Local mode: the adapter that drives the reconciler from the resource store and applies its result to Kafka.

Resources and statuses live on compacted topics (the contract too, through :mod:`controller.dataplane`).
:class:`LocalController` implements :class:`controller.adapter.Adapter`; :class:`~controller.driver.Driver`
runs its passes. Only what changed is written: statuses are compared with what was published.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import orjson

from controller.adapter import Observed
from controller.conditions import keep_transition_times
from controller.context import ControllerConfig
from controller.dataplane import DataPlaneAdapter, KafkaDataPlane, publish
from controller.driver import Driver
from controller.settings import ControllerSettings
from keventing.resources import Condition, Resource, ResourceInvalid, ResourceKey, Status
from keventing.resources.base import now_rfc3339
from keventing.restarting import retrying
from keventing.store import ResourceStore, decode_resource
from keventing.topics import TopicPolicy, parse_prefixes

log = logging.getLogger("keventing.controller")


def controller_config(settings: ControllerSettings) -> ControllerConfig:
    return ControllerConfig(
        ingress_url=settings.ingress_url.rstrip("/"),
        internal_ingress_url=settings.internal_ingress_url.rstrip("/")
        if settings.internal_ingress_url
        else None,
        default_partitions=settings.default_partitions,
        default_replication_factor=settings.default_replication_factor,
        event_type_auto_create=settings.event_type_auto_create,
        topic_policy=TopicPolicy(settings.instance, parse_prefixes(settings.user_topic_prefixes)),
        system_namespace=settings.system_namespace,
        kubernetes=settings.kubernetes,
        broker_classes=settings.broker_class_set,
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        transport_encryption=settings.transport_encryption,
        ingress_https_url=settings.ingress_https_url.rstrip("/"),
        internal_ingress_https_url=settings.internal_ingress_https_url.rstrip("/")
        if settings.internal_ingress_https_url
        else None,
        ingress_ca_certs=_read_pem(settings.ingress_ca_file, "KEVENTING_INGRESS_CA_FILE"),
        oidc=settings.oidc_enabled,
        default_authorization_mode=settings.default_authorization_mode,
    )


def _read_pem(path: str | None, variable: str) -> str | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as err:
        raise SystemExit(f"{variable}: cannot read {path}: {err.strerror}") from None


class LocalController(DataPlaneAdapter):
    """The local-store adapter: follows the resource store and reconciles on every change and resync."""

    def __init__(self, settings: ControllerSettings) -> None:
        self.settings = settings
        self.config = controller_config(settings)
        self.store = ResourceStore(settings)
        self.data_plane = KafkaDataPlane(settings)
        self.driver = Driver(self, self.config, settings.resync_seconds)
        self.data_plane.report_listeners.append(self.driver.changed)
        self.resources: dict[str, Resource] = {}
        self.published_statuses: dict[str, bytes] = {}
        self.synced = False

    async def run(self) -> None:
        await retrying(self._connect, log, "cannot start on Kafka yet; retrying")
        self.published_statuses = await self.store.statuses.snapshot()
        follower = asyncio.create_task(self._follow())
        try:
            await self.driver.run()
        finally:
            follower.cancel()
            await self.data_plane.stop()
            await self.store.close()

    async def _connect(self) -> None:
        await self.store.ensure()
        await self.data_plane.start()

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
            self.driver.changed()

    # ------------------------------------------------------------------------------------- the Adapter

    async def observe(self) -> Observed:
        return Observed(
            list(self.resources.values()),
            self.data_plane.topic_errors,
            self.data_plane.source_reports,
            published=self.data_plane.published,
            connection_errors=self.data_plane.connection_errors,
        )

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

    async def write_statuses(self, statuses: Mapping[ResourceKey, Status]) -> None:
        now = now_rfc3339()
        wanted: dict[str, bytes] = {}
        for resource_key, status in statuses.items():
            previous = _conditions_of(self.published_statuses.get(str(resource_key)))
            status = keep_transition_times(status, previous, now)
            wanted[str(resource_key)] = orjson.dumps(status.model_dump(mode="json", exclude_none=True))
        await publish(self.store.statuses, self.published_statuses, wanted)


def _owned_part(resource: Resource) -> object:
    """What the controller decides about a generated resource (not uid, timestamps or generation)."""
    return resource.model_dump(
        mode="json", exclude={"status": True, "metadata": {"uid", "creationTimestamp", "generation"}}
    )


def _conditions_of(status: bytes | None) -> list[Condition]:
    """The conditions of a published status."""
    if status is None:
        return []
    return [Condition.model_validate(c) for c in orjson.loads(status).get("conditions", [])]
