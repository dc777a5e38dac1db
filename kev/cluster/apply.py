"""Putting Knative resources into a cluster the way ``kubectl apply --server-side`` does, for ``kev up --kubernetes``.

Documents are validated by keventing's models first (the same messages as in local mode) and applied through
``kev``'s own cluster client; the CRDs come from
the same generator as ``charts/keventing/crds/``, so an installed ``kev`` needs no chart checkout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from kubernetes_asyncio import client, config

from controller.kubernetes.api import APPLY_PATCH
from kev.kubeclient import KubernetesClient
from keventing.resources import ResourceKey, parse_resource
from keventing.resources.crds import generate_crds

FIELD_MANAGER = "kev"


@asynccontextmanager
async def api_client(kubeconfig: str | None) -> AsyncIterator[client.ApiClient]:
    api = await config.new_client_from_config(config_file=kubeconfig)
    async with api:
        yield api


async def apply_crds(kubeconfig: str | None, timeout: float = 60.0) -> None:
    """Server-side apply every CRD keventing serves and wait until the API server serves them."""
    async with api_client(kubeconfig) as api:
        extensions = client.ApiextensionsV1Api(api)
        names = []
        for crd in generate_crds():
            name = crd["metadata"]["name"]
            await extensions.patch_custom_resource_definition(
                name, crd, field_manager=FIELD_MANAGER, force=True, **APPLY_PATCH
            )
            names.append(name)
        deadline = asyncio.get_running_loop().time() + timeout
        for name in names:
            while not _established(await extensions.read_custom_resource_definition(name)):
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"the API server did not establish {name} within {timeout:.0f} s")
                await asyncio.sleep(0.2)


def _established(crd: client.V1CustomResourceDefinition) -> bool:
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


async def apply_documents(kubeconfig: str | None, documents: Iterable[dict[str, Any]]) -> list[ResourceKey]:
    """Validate each document with keventing's models, then server-side apply it; the keys applied."""
    resources = [parse_resource(document) for document in documents]
    async with KubernetesClient.connect(kubeconfig, None) as cluster:
        for resource in resources:
            await cluster.apply(resource)
    return [resource.key for resource in resources]


async def wait_ready_in_cluster(kubeconfig: str | None, key: ResourceKey, timeout: float = 60.0) -> None:
    async with KubernetesClient.connect(kubeconfig, None) as cluster:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            resource = await cluster.get(key)
            if resource is not None and resource.status.ready:
                return
            if asyncio.get_running_loop().time() > deadline:
                conditions = resource.status.conditions if resource is not None else "not found"
                raise TimeoutError(f"{key} is not Ready after {timeout:.0f} s: {conditions}")
            await asyncio.sleep(0.25)
