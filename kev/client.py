"""Where ``kev`` reads and writes resources: the local store on Kafka, or a Kubernetes API server.

Every resource command has one code path over :class:`ResourceClient`; :func:`open_client` picks the
implementation from the settings (``--kubeconfig``/``--context`` or ``KEVENTING_KUBERNETES=true`` choose a
cluster). Each implementation maps its own failures to :class:`ClientError`, whose message the CLI prints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Protocol

from pydantic import Field

from keventing.resources import Resource, ResourceKey
from keventing.settings import CommonSettings
from keventing.store import ResourceStore

FIELD_MANAGER = "kev"


class ClientSettings(CommonSettings):
    # Kubernetes mode: resources live on the API server (the same variables as the controller's).
    kubernetes: bool = Field(default=False, alias="KEVENTING_KUBERNETES")
    kubeconfig: str | None = Field(default=None, alias="KUBECONFIG")
    kube_context: str | None = Field(default=None, alias="KEVENTING_KUBE_CONTEXT")


class ClientError(Exception):
    """The resources could not be read or written; the message says where and why."""


class ResourceClient(Protocol):
    async def apply(self, resource: Resource) -> str:
        """Create or update ``resource``; what happened: created, configured or unchanged."""
        ...

    async def apply_all(self, resources: list[Resource]) -> list[str]:
        """``apply`` each, in order; what happened to each."""
        ...

    async def list(self, kind: str, namespace: str | None) -> list[Resource]:
        """The resources of ``kind`` (in ``namespace``, or in all), with their statuses."""
        ...

    async def get(self, key: ResourceKey) -> Resource | None: ...

    async def delete(self, key: ResourceKey) -> bool:
        """Delete the resource; False if there was none."""
        ...

    async def annotate(self, key: ResourceKey, annotations: Mapping[str, str | None]) -> bool:
        """Set (None: remove) annotations of the resource, leaving the rest as it is; False if there is none."""
        ...


class LocalClient:
    """The local store: resources and statuses on compacted Kafka topics."""

    def __init__(self, store: ResourceStore) -> None:
        self.store = store

    async def apply(self, resource: Resource) -> str:
        return (await self.store.apply(resource))[1]

    async def apply_all(self, resources: list[Resource]) -> list[str]:
        return [action for _, action in await self.store.apply_all(resources)]

    async def list(self, kind: str, namespace: str | None) -> list[Resource]:
        return await self.store.list(kind, namespace)

    async def get(self, key: ResourceKey) -> Resource | None:
        return await self.store.get(key)

    async def delete(self, key: ResourceKey) -> bool:
        return await self.store.delete(key)

    async def annotate(self, key: ResourceKey, annotations: Mapping[str, str | None]) -> bool:
        resource = await self.store.get(key)
        if resource is None:
            return False
        for name, value in annotations.items():
            if value is None:
                resource.metadata.annotations.pop(name, None)
            else:
                resource.metadata.annotations[name] = value
        await self.store.apply(resource)
        return True


@asynccontextmanager
async def open_client(settings: ClientSettings) -> AsyncIterator[ResourceClient]:
    """The client the settings name, open for the duration of the block."""
    if settings.kubernetes:
        from kev.kubeclient import KubernetesClient

        async with KubernetesClient.connect(settings.kubeconfig, settings.kube_context) as client:
            yield client
        return
    where = f"Kafka at {settings.kafka_bootstrap_servers}"
    store = ResourceStore(settings)
    try:
        await store.ensure()
        yield LocalClient(store)
    except (ConnectionError, OSError) as err:
        raise ClientError(f"cannot reach {where}: {err}") from None
    except Exception as err:
        if type(err).__module__.startswith("aiokafka"):
            raise ClientError(f"{where} failed: {err!r}") from None
        raise
    finally:
        await store.close()
