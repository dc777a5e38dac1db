"""The test cluster runs the pinned Kubernetes, and the cached kubectl and helm are the pinned ones."""

from __future__ import annotations

import json
import subprocess

import pytest
from kubernetes_asyncio import client

from kev.cluster.launcher import LocalCluster
from kev.cluster.toolchain import HELM_VERSION, KUBERNETES_VERSION

pytestmark = pytest.mark.kubernetes


async def test_apiserver_reports_the_pinned_kubernetes_version(kube_api: client.ApiClient) -> None:
    info = await client.VersionApi(kube_api).get_code()
    assert info.git_version == KUBERNETES_VERSION
    assert (info.major, info.minor) == ("1", KUBERNETES_VERSION.split(".")[1])


def test_cached_kubectl_reports_pinned_client_and_server_versions(kube_cluster: LocalCluster) -> None:
    kubectl = kube_cluster.toolchain.binary("kubectl")
    done = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kube_cluster.kubeconfig_path), "version", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    versions = json.loads(done.stdout)
    assert versions["clientVersion"]["gitVersion"] == KUBERNETES_VERSION
    assert versions["serverVersion"]["gitVersion"] == KUBERNETES_VERSION


def test_cached_helm_is_the_pinned_version(kube_cluster: LocalCluster) -> None:
    helm = kube_cluster.toolchain.binary("helm")
    done = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(HELM_VERSION)


async def test_anonymous_requests_are_rejected(kube_cluster: LocalCluster) -> None:
    anonymous = client.Configuration(host=kube_cluster.server, ssl_ca_cert=str(kube_cluster.pki.ca_cert))
    async with client.ApiClient(anonymous) as api:
        try:
            await client.CoreV1Api(api).list_namespace()
        except client.ApiException as exc:
            assert exc.status in (401, 403)
        else:
            raise AssertionError("an anonymous client could list namespaces")
