"""kube-controller-manager runs: Deployments get ReplicaSets and owned objects are garbage-collected."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from kubernetes_asyncio import client

pytestmark = pytest.mark.kubernetes


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


def _deployment(name: str) -> client.V1Deployment:
    labels = {"app": name}
    container = client.V1Container(name="main", image="registry.invalid/never-pulled:1")
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=client.V1PodSpec(containers=[container])
            ),
        ),
    )


async def test_deployment_gets_a_replicaset_owned_by_it(kube_api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(kube_api)
    deployment = await apps.create_namespaced_deployment(namespace, _deployment("web"))
    owned: list[client.V1ReplicaSet] = []

    async def has_replicaset() -> bool:
        replicasets = await apps.list_namespaced_replica_set(namespace)
        owned[:] = [
            rs
            for rs in replicasets.items
            if any(ref.uid == deployment.metadata.uid for ref in rs.metadata.owner_references or [])
        ]
        return bool(owned)

    await _eventually(has_replicaset)
    assert owned[0].spec.replicas == 1


async def test_deleting_an_owner_garbage_collects_its_owned_configmap(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    owner = await core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    await core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owned", owner_references=[reference])),
    )
    await core.delete_namespaced_config_map("owner", namespace)

    async def owned_is_gone() -> bool:
        try:
            await core.read_namespaced_config_map("owned", namespace)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    await _eventually(owned_is_gone)
