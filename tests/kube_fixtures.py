"""Fixtures for tests against a real Kubernetes control plane: one :class:`LocalCluster` per session.

The toolchain is built before the first test runs (outside the per-test timeout: it takes many minutes
the first time), and a missing toolchain that cannot be built fails the session; nothing skips. A plugin
that tests/conftest.py loads, not a tests/kubernetes/conftest.py: a second module named ``conftest`` would
shadow the first for the tests that ``from conftest import`` it. ``tests/kubernetes/`` has no
``__init__.py`` either: ``tests/`` is on sys.path, and a package named ``kubernetes`` would shadow the
Kubernetes client library.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from kubectl import RELEASE_NAMESPACE, Kubectl
from kubernetes_asyncio import client, config

from kev.cluster.launcher import LocalCluster
from kev.cluster.pki import kubeconfig, write_kubeconfig
from kev.cluster.toolchain import Toolchain, ToolchainError

CHART = Path(__file__).resolve().parents[1] / "charts" / "keventing"


@pytest.hookimpl(trylast=True)  # after `-m` deselection: `-m "not kubernetes"` must not build anything
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any(item.get_closest_marker("kubernetes") for item in items):
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        say = reporter.write_line if reporter is not None else print
        try:
            Toolchain(progress=say).ensure()
        except ToolchainError as exc:
            pytest.exit(f"the Kubernetes tests need the test cluster's binaries: {exc}", returncode=1)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("kube-cluster"), progress=print)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
async def kube_api(kube_cluster: LocalCluster) -> AsyncIterator[client.ApiClient]:
    """An admin API client (the kubeconfig's static token in system:masters)."""
    api = await config.new_client_from_config(config_file=str(kube_cluster.kubeconfig_path))
    async with api:
        yield api


@pytest.fixture
async def namespace(kube_api: client.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        await core.delete_namespace(name)


@pytest.fixture(scope="session")
def kubectl(kube_cluster: LocalCluster) -> Kubectl:
    """The cached kubectl with the admin kubeconfig, as a user runs it."""
    return Kubectl(Toolchain().binary("kubectl"), kube_cluster.kubeconfig_path)


def chart_account(
    cluster: LocalCluster, kubectl: Kubectl, directory: Path, release: str, namespace: str
) -> Path:
    """Install the chart's ServiceAccount and RBAC (rendered by the cached helm) as release ``release`` in a new
    ``namespace``; a kubeconfig with that account's token, bound to nothing but the chart's roles.

    Services run with it in the tests, which proves templates/rbac.yaml grants enough.
    """
    rendered = subprocess.run(
        [
            str(Toolchain().binary("helm")),
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            # The helm build stamps no default Kubernetes version of its own.
            "--kube-version",
            "1.34.4",
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    (account,) = [
        d["metadata"]["name"] for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ServiceAccount"
    ]
    kubectl.run("create", "namespace", namespace)
    kubectl.run("apply", "-n", namespace, "-f", "-", stdin=rendered)
    token = kubectl.run("create", "token", account, "-n", namespace, "--duration=2h").stdout.strip()
    document = kubeconfig(server=cluster.server, ca_cert=cluster.pki.ca_cert, token=token)
    return write_kubeconfig(directory / "kubeconfig", document)


@pytest.fixture(scope="session")
def operator_kubeconfig(
    kube_cluster: LocalCluster, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The operator's kubeconfig: the chart's ServiceAccount in the release namespace."""
    kubectl.apply_crds()
    return chart_account(
        kube_cluster, kubectl, tmp_path_factory.mktemp("operator"), "keventing", RELEASE_NAMESPACE
    )


@pytest.fixture(scope="session")
def operator_env(kafka: str, operator_kubeconfig: Path) -> dict[str, str]:
    """The environment of a Kubernetes-mode stack whose operator runs as the chart's ServiceAccount."""
    return {
        "KEVENTING_DEFAULT_TOPIC_PARTITIONS": "2",
        "KEVENTING_KUBERNETES": "true",
        "KUBECONFIG": str(operator_kubeconfig),
        "KEVENTING_RESYNC_SECONDS": "5",
        "KEVENTING_LEADER_ELECTION_NAMESPACE": RELEASE_NAMESPACE,
    }
