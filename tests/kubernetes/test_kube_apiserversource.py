"""ApiServerSource on a real kube-apiserver: ConfigMap changes become Knative's events at a sink.

In Kubernetes mode the source is applied with kubectl and reconciled by the operator; in local mode it is
applied with ``kev apply`` to the local store. Either way the sources runner watches the test cluster as the
source's service account, so what that account may not list it cannot watch; the runner itself runs with
the token of a ServiceAccount bound to the chart's own sources ClusterRole, which proves that RBAC sufficient.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from kube_fixtures import chart_account
from kubectl import Kubectl

from kev.cluster.launcher import LocalCluster
from kev.readiness import wait_ready
from kev.stack import Stack, kev_command
from keventing import events
from keventing.resources import ResourceKey
from keventing.settings import CommonSettings

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(300)]


def _stack(kafka: str, logs: Path, kubernetes: bool, admin: Path, runner: Path) -> Stack:
    """The controller (the operator with the admin kubeconfig, or local mode) and a sources runner."""
    env = {"KEVENTING_RESYNC_SECONDS": "5", "KEVENTING_APISERVER_RECHECK_SECONDS": "1"}
    if kubernetes:
        env |= {"KEVENTING_KUBERNETES": "true", "KUBECONFIG": str(admin)}
    stack = Stack.on_free_ports(
        kafka,
        logs,
        "apiserver",
        extra_env=env,
    )
    stack.start(stack.service("controller"))
    stack.start(stack.service("sources", KUBECONFIG=str(runner)))
    return stack


@pytest.fixture(scope="module")
def runner_kubeconfig(
    kube_cluster: LocalCluster, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The sources runner's kubeconfig: the chart's ServiceAccount, with the chart's RBAC."""
    return chart_account(
        kube_cluster, kubectl, tmp_path_factory.mktemp("runner"), "kev", f"kev-{uuid.uuid4().hex[:8]}"
    )


@pytest.fixture(scope="module")
def kube_stack(
    kafka: str,
    kube_cluster: LocalCluster,
    kubectl: Kubectl,
    runner_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    kubectl.apply_crds()
    stack = _stack(
        kafka,
        tmp_path_factory.mktemp("apiserver-kube"),
        True,
        kube_cluster.kubeconfig_path,
        runner_kubeconfig,
    )
    try:
        stack.wait_ready(timeout=90)
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(scope="module")
def local_stack(
    kafka: str, kube_cluster: LocalCluster, runner_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    stack = _stack(
        kafka,
        tmp_path_factory.mktemp("apiserver-local"),
        False,
        kube_cluster.kubeconfig_path,
        runner_kubeconfig,
    )
    try:
        stack.wait_ready(timeout=90)
        yield stack
    finally:
        stack.stop_all()


def _source(name: str, namespace: str, uri: str, account: str, mode: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resources": [
            {"apiVersion": "v1", "kind": "ConfigMap", "selector": {"matchLabels": {"watched": "yes"}}}
        ],
        "serviceAccountName": account,
        "sink": {"uri": uri},
        "ceOverrides": {"extensions": {"team": "platform"}},
    }
    if mode:
        spec["mode"] = mode
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "ApiServerSource",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _account_that_may_watch_configmaps(name: str, namespace: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "configmap-watcher", "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "configmap-watcher", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-watcher"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def _configmap(name: str, namespace: str, value: str, watched: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"watched": "yes" if watched else "no"}},
        "data": {"value": value},
    }


def _create_update_delete(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(_configmap("ignored", namespace, "1", watched=False))  # not selected: no event
    kubectl.apply(_configmap("settings", namespace, "1"))
    kubectl.apply(_configmap("settings", namespace, "2"))
    kubectl.run("delete", "configmap", "settings", "-n", namespace)


def _events(sink: Any, path: str) -> list[events.Event]:
    received = sink.wait_for(path, 3, timeout=60)
    return [events.from_http(r.headers, r.body) for r in received]


def test_configmap_changes_become_reference_events_in_kubernetes_mode(
    kube_stack: Stack, kubectl: Kubectl, kube_cluster: LocalCluster, namespace: str, sink: Any
) -> None:
    path = f"apiserver-{namespace}"
    kubectl.apply(
        *_account_that_may_watch_configmaps("watcher", namespace),
        _source("configmaps", namespace, sink.url(path), "watcher"),
    )
    source = kubectl.wait_ready("apiserversource", "configmaps", namespace, timeout=90)
    conditions = {c["type"]: c["status"] for c in source["status"]["conditions"]}
    assert conditions == {
        "Ready": "True",
        "SinkProvided": "True",
        "SufficientPermissions": "True",
        "Deployed": "True",
        # authentication-oidc is disabled here: True, with Knative's reason, and no ServiceAccount.
        "OIDCIdentityCreated": "True",
    }
    assert source["status"]["sinkUri"] == sink.url(path)
    assert {a["type"] for a in source["status"]["ceAttributes"]} == {
        "dev.knative.apiserver.ref.add",
        "dev.knative.apiserver.ref.update",
        "dev.knative.apiserver.ref.delete",
    }

    _create_update_delete(kubectl, namespace)
    got = _events(sink, path)
    assert [e.type for e in got] == [
        "dev.knative.apiserver.ref.add",
        "dev.knative.apiserver.ref.update",
        "dev.knative.apiserver.ref.delete",
    ]
    for event in got:
        assert event.source == kube_cluster.server
        assert event.attributes["subject"] == f"/apis/v1/namespaces/{namespace}/configmaps/settings"
        assert event.attributes["team"] == "platform"
        assert (event.attributes["kind"], event.attributes["name"]) == ("ConfigMap", "settings")
        assert orjson.loads(event.data or b"") == {
            "kind": "ConfigMap",
            "namespace": namespace,
            "name": "settings",
            "apiVersion": "v1",
        }
    assert len({e.id for e in got}) == 3


def test_a_source_whose_account_may_not_list_configmaps_is_not_ready(
    kube_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any
) -> None:
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "nobody", "namespace": namespace},
        },
        _source("denied", namespace, sink.url(f"denied-{namespace}"), "nobody"),
    )
    source = kubectl.wait_for_condition(
        "apiserversource", "denied", namespace, "SufficientPermissions", "False", timeout=90
    )
    conditions = {c["type"]: c for c in source["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    message = conditions["SufficientPermissions"]["message"]
    assert f"system:serviceaccount:{namespace}:nobody" in message
    assert '"configmaps"' in message and "list" in message

    # Once the account is granted what it needs, the source becomes Ready.
    kubectl.apply(*_account_that_may_watch_configmaps("nobody", namespace)[1:])
    kubectl.wait_ready("apiserversource", "denied", namespace, timeout=90)


def test_configmap_changes_become_resource_events_in_local_mode(
    local_stack: Stack,
    kubectl: Kubectl,
    kube_cluster: LocalCluster,
    namespace: str,
    sink: Any,
    tmp_path: Path,
) -> None:
    path = f"apiserver-local-{namespace}"
    kubectl.apply(*_account_that_may_watch_configmaps("watcher", namespace))
    manifest = tmp_path / "source.yaml"
    manifest.write_text(
        yaml.safe_dump(_source("configmaps", namespace, sink.url(path), "watcher", "Resource"))
    )
    env = {**local_stack.env()}
    applied = subprocess.run(
        [*kev_command(), "apply", "-f", str(manifest)], env=env, capture_output=True, text=True
    )
    assert applied.returncode == 0, applied.stderr
    settings = CommonSettings(  # type: ignore[call-arg]
        KAFKA_BOOTSTRAP_SERVERS=local_stack.bootstrap_servers, KEVENTING_INSTANCE=local_stack.instance
    )
    key = ResourceKey("ApiServerSource", namespace, "configmaps")
    asyncio.run(wait_ready(settings, key, timeout=90))

    _create_update_delete(kubectl, namespace)
    got = _events(sink, path)
    assert [e.type for e in got] == [
        "dev.knative.apiserver.resource.add",
        "dev.knative.apiserver.resource.update",
        "dev.knative.apiserver.resource.delete",
    ]
    objects = [orjson.loads(e.data or b"") for e in got]
    assert [o["data"]["value"] for o in objects] == ["1", "2", "2"]
    assert all(o["metadata"]["name"] == "settings" and o["kind"] == "ConfigMap" for o in objects)
    assert all(e.source == kube_cluster.server for e in got)


def test_a_namespace_selector_watches_every_matching_namespace_and_filters_apply(
    kube_stack: Stack, kubectl: Kubectl, namespace: str, sink: Any
) -> None:
    team = f"team-{uuid.uuid4().hex[:8]}"
    other = f"{namespace}-b"
    kubectl.run("create", "namespace", other)
    try:
        for ns in (namespace, other):
            kubectl.run("label", "namespace", ns, f"team={team}")
            kubectl.apply(*_account_that_may_watch_configmaps("watcher", ns)[1:])
        kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "watcher", "namespace": namespace},
            }
        )
        # The account of the source's namespace, granted configmaps in both namespaces.
        for ns in (namespace, other):
            kubectl.run(
                "create",
                "rolebinding",
                "source-account",
                "--role=configmap-watcher",
                f"--serviceaccount={namespace}:watcher",
                "-n",
                ns,
            )
        path = f"apiserver-selector-{namespace}"
        source = _source("teams", namespace, sink.url(path), "watcher")
        source["spec"]["namespaceSelector"] = {"matchLabels": {"team": team}}
        source["spec"]["filters"] = [{"exact": {"type": "dev.knative.apiserver.ref.add"}}]
        kubectl.apply(source)
        ready = kubectl.wait_ready("apiserversource", "teams", namespace, timeout=90)
        assert sorted(ready["status"]["namespaces"]) == sorted([namespace, other])

        for ns in (namespace, other):
            kubectl.apply(_configmap("settings", ns, "1"))
            kubectl.apply(_configmap("settings", ns, "2"))  # an update: filtered out
        got = [events.from_http(r.headers, r.body) for r in sink.wait_for(path, 2, timeout=60)]
        assert {e.attributes["namespace"] for e in got} == {namespace, other}
        assert {e.type for e in got} == {"dev.knative.apiserver.ref.add"}
    finally:
        kubectl.run("delete", "namespace", other, "--wait=false")
