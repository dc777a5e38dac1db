"""The local resource store: Knative resources on a compacted topic, their statuses on another.

Specs and statuses live apart so that ``kev apply`` and the controller never overwrite each other's writes.
Kubernetes mode replaces this store with the API server; everything else stays the same.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from keventing.kafka.compacted import CompactedTopic
from keventing.resources import Resource, ResourceKey, Status, parse_resource
from keventing.resources.base import now_rfc3339
from keventing.settings import CommonSettings


def decode_resource(value: bytes, semantics: bool = True) -> Resource:
    return parse_resource(orjson.loads(value), semantics)


class ResourceStore:
    def __init__(self, settings: CommonSettings) -> None:
        replicas = settings.control_plane_replication_factor
        self.resources = CompactedTopic(settings.kafka_connection, settings.resources_topic, replicas)
        self.statuses = CompactedTopic(settings.kafka_connection, settings.status_topic, replicas)

    async def ensure(self) -> None:
        await self.resources.ensure()
        await self.statuses.ensure()

    async def close(self) -> None:
        await self.resources.stop()
        await self.statuses.stop()

    async def apply(self, resource: Resource) -> tuple[Resource, str]:
        """Store ``resource``; return it as stored and what happened (created, configured, unchanged)."""
        return (await self.apply_all([resource]))[0]

    async def apply_all(self, resources: list[Resource]) -> list[tuple[Resource, str]]:
        """Store each of ``resources`` in order, reading the store once (not once per resource)."""
        table = await self.resources.snapshot()
        results = []
        for resource in resources:
            key = str(resource.key)
            existing_raw = table.get(key)
            meta = resource.metadata
            action = "created"
            if existing_raw is not None:
                existing = decode_resource(existing_raw)
                meta.uid = existing.metadata.uid
                meta.creationTimestamp = existing.metadata.creationTimestamp
                same = (
                    _spec_of(existing) == _spec_of(resource)
                    and existing.metadata.annotations == meta.annotations
                )
                meta.generation = existing.metadata.generation + (0 if same else 1)
                action = "unchanged" if same and existing.metadata.labels == meta.labels else "configured"
            else:
                meta.uid = meta.uid or str(uuid.uuid4())
                meta.creationTimestamp = meta.creationTimestamp or now_rfc3339()
                meta.generation = 1
            if action != "unchanged":
                table[key] = orjson.dumps(resource.to_document(with_status=False))
                await self.resources.put(key, table[key])
            results.append((resource, action))
        return results

    async def delete(self, key: ResourceKey) -> bool:
        existing = await self.resources.snapshot()
        if str(key) not in existing:
            return False
        await self.resources.put(str(key), None)
        return True

    async def list(self, kind: str | None = None, namespace: str | None = None) -> list[Resource]:
        resources = await self.resources.snapshot()
        statuses = await self.statuses.snapshot()
        out = []
        for key, value in sorted(resources.items()):
            k = ResourceKey.parse(key)
            if (kind and k.kind != kind) or (namespace and k.namespace != namespace):
                continue
            resource = decode_resource(value)
            status = statuses.get(key)
            if status is not None:
                resource.status = type(resource.status).model_validate(orjson.loads(status))
            out.append(resource)
        return out

    async def get(self, key: ResourceKey) -> Resource | None:
        found = await self.list(key.kind, key.namespace)
        return next((r for r in found if r.name == key.name), None)

    async def put_status(self, key: ResourceKey, status: Status | None) -> None:
        value = None if status is None else orjson.dumps(status.model_dump(mode="json", exclude_none=True))
        await self.statuses.put(str(key), value)


def _spec_of(resource: Resource) -> Any:
    # A ConfigMap's or a Secret's content is its data.
    return resource.model_dump(mode="json", include={"spec", "data", "stringData"})
