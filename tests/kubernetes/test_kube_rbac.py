"""RBAC is enforced: a ServiceAccount may do only what a binding grants it."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio import client

from kev.cluster.launcher import LocalCluster

pytestmark = pytest.mark.kubernetes


async def _service_account_token(api: client.ApiClient, namespace: str, name: str) -> str:
    core = client.CoreV1Api(api)
    await core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    issued = await core.create_namespaced_service_account_token(name, namespace, request)
    return str(issued.status.token)


def _client_for(cluster: LocalCluster, token: str) -> client.ApiClient:
    configuration = client.Configuration(
        host=cluster.server,
        api_key={"BearerToken": token},
        api_key_prefix={"BearerToken": "Bearer"},
        ssl_ca_cert=str(cluster.pki.ca_cert),
    )
    return client.ApiClient(configuration)


async def _list_pods_status(api: client.ApiClient, namespace: str) -> int:
    try:
        await client.CoreV1Api(api).list_namespaced_pod(namespace)
    except client.ApiException as exc:
        return int(exc.status)
    return 200


async def test_service_account_without_bindings_is_forbidden_to_list_pods(
    kube_cluster: LocalCluster, kube_api: client.ApiClient, namespace: str
) -> None:
    token = await _service_account_token(kube_api, namespace, "reader")
    async with _client_for(kube_cluster, token) as api:
        with pytest.raises(client.ApiException) as denied:
            await client.CoreV1Api(api).list_namespaced_pod(namespace)
    assert denied.value.status == 403
    # Denied as the ServiceAccount, not as an anonymous caller whose token was lost on the way.
    assert f"system:serviceaccount:{namespace}:reader" in denied.value.body


async def test_service_account_may_list_pods_after_a_role_binding(
    kube_cluster: LocalCluster, kube_api: client.ApiClient, namespace: str
) -> None:
    token = await _service_account_token(kube_api, namespace, "reader")
    rbac = client.RbacAuthorizationV1Api(kube_api)
    await rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])],
        ),
    )
    await rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader-reads-pods"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
        ),
    )
    async with _client_for(kube_cluster, token) as api:
        # The authorizer reads bindings from an informer cache: allow it a moment to see the new one.
        for _ in range(50):
            if (status := await _list_pods_status(api, namespace)) == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200
        with pytest.raises(client.ApiException) as denied:
            await client.CoreV1Api(api).list_namespaced_secret(namespace)
        assert denied.value.status == 403
