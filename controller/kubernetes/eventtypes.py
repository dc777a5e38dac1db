"""EventTypes in the cluster: what the data plane auto-creates (on ``<instance>.resources``, as in local
mode) becomes an EventType object owned by its Broker, so `kubectl get eventtypes` shows it.

The data plane stays the same in both modes; only the operator talks to the API server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kubernetes_asyncio import client as k8s

from controller.kubernetes.api import apply_custom_object
from controller.kubernetes.objects import child_object
from keventing.kafka.compacted import CompactedTopic
from keventing.resources import EventType, Resource, ResourceKey
from keventing.resources.eventtype import convert_document
from keventing.store import decode_resource

log = logging.getLogger("keventing.controller.kubernetes")

FIELD_MANAGER = "keventing-eventtypes"


class EventTypeMirror:
    def __init__(
        self, resources: CompactedTopic, api: k8s.ApiClient, lookup: Callable[[ResourceKey], Resource | None]
    ) -> None:
        self.resources = resources
        self.api = k8s.CustomObjectsApi(api)
        self.lookup = lookup  # the operator's index: a Broker's uid for the ownerReference
        self.mirrored: set[str] = set()
        self.pending: dict[str, EventType] = {}

    async def run(self) -> None:
        follow = asyncio.create_task(self._follow())
        try:
            while True:
                await self._apply_pending()
                await asyncio.sleep(1)
        finally:
            follow.cancel()
            await asyncio.gather(follow, return_exceptions=True)

    async def _follow(self) -> None:
        async for batch in self.resources.follow():
            for key, value in batch:
                if value is None or not key.startswith("EventType/") or key in self.mirrored:
                    continue
                try:
                    resource = decode_resource(value, semantics=False)
                except ValueError as err:
                    log.warning("ignoring an unreadable EventType", extra={"key": key, "error": str(err)})
                    continue
                if isinstance(resource, EventType):
                    self.pending[key] = resource

    async def _apply_pending(self) -> None:
        for key, event_type in list(self.pending.items()):
            if await self._apply(event_type):
                self.mirrored.add(key)
                del self.pending[key]

    async def _apply(self, event_type: EventType) -> bool:
        """Apply one EventType; False to try again later (its Broker is not known yet)."""
        owners = []
        for ref in event_type.metadata.ownerReferences:
            owner = self.lookup(ResourceKey(ref.kind, event_type.namespace, ref.name))
            if owner is None or owner.metadata.uid is None:
                return False
            owners.append(ref.model_copy(update={"uid": owner.metadata.uid}))
        event_type = event_type.model_copy(deep=True)
        event_type.metadata.ownerReferences = owners
        try:
            # In the version the CRD stores (Knative's CRD converts others only through its webhook).
            document = convert_document(child_object(event_type), EventType.API_VERSIONS[0])
            await apply_custom_object(self.api, document, FIELD_MANAGER)
        except k8s.ApiException as err:
            log.warning(
                "could not record an EventType in the cluster; retrying",
                extra={"eventtype": str(event_type.key), "status": err.status, "reason": err.reason},
            )
            return False
        log.info("EventType recorded", extra={"eventtype": str(event_type.key), "type": event_type.spec.type})
        return True
