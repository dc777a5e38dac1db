"""SinkBinding and ContainerSource on a real kube-apiserver: the operator binds Deployments to sinks.

The operator serves its admission webhook over HTTPS on loopback (``KEVENTING_WEBHOOK_URL``), so a
Deployment created after its binding is bound by the API server calling the webhook; one that existed
before is patched by the operator. There is no kubelet: pods never run, but pod templates are what counts.
The operator runs with the token of the chart's ServiceAccount and ClusterRole (rendered with helm), so
these tests also prove that the chart's RBAC suffices for binding.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kube_fixtures import chart_account
from kubectl import Kubectl
from kubernetes_asyncio import client

from controller.kubernetes import webhook
from kev.cluster.launcher import LocalCluster
from kev.kafka.embedded import free_port
from kev.stack import Service, Stack, kev_command

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(600)]

SINK = "http://event-display.example.svc.cluster.local/"


@pytest.fixture(scope="module")
def binding_stack(
    kafka: str, kube_cluster: LocalCluster, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    webhook_port = free_port()
    stack = _binder_stack(
        kafka, kube_cluster, kubectl, tmp_path_factory, webhook_url=f"https://127.0.0.1:{webhook_port}"
    )
    stack.start_all(("controller",))
    try:
        stack.wait_ready(timeout=90, names=["controller"])
        _wait_for(lambda: _webhook_registered(kubectl, webhook_port), "the webhook configuration")
        yield stack
    finally:
        stack.stop_all()


def _binder_stack(
    kafka: str,
    kube_cluster: LocalCluster,
    kubectl: Kubectl,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    webhook_url: str,
    **env: str,
) -> Stack:
    """Operators as the chart's ServiceAccount of a release of their own, registering the webhook at
    ``webhook_url`` (whichever replica serves there)."""
    kubectl.apply_crds()
    release = f"binder-{uuid.uuid4().hex[:6]}"
    release_namespace = f"keventing-{uuid.uuid4().hex[:6]}"
    operator_kubeconfig = chart_account(
        kube_cluster, kubectl, tmp_path_factory.mktemp("binding-operator"), release, release_namespace
    )
    return Stack.on_free_ports(
        kafka,
        tmp_path_factory.mktemp("binding-logs"),
        "kube",
        extra_env={
            "KEVENTING_KUBERNETES": "true",
            "KUBECONFIG": str(operator_kubeconfig),
            "KEVENTING_RESYNC_SECONDS": "5",
            "KEVENTING_HTTP_HOST": "127.0.0.1",
            "KEVENTING_WEBHOOK_PORT": webhook_url.rsplit(":", 1)[1],
            "KEVENTING_WEBHOOK_URL": webhook_url,
            "KEVENTING_WEBHOOK_CONFIGURATION": f"keventing-sinkbindings-{uuid.uuid4().hex[:8]}",
            # As the chart sets them: the Lease and the webhook's certificate Secret in the release namespace.
            "KEVENTING_LEADER_ELECTION_NAMESPACE": release_namespace,
            "KEVENTING_WEBHOOK_NAMESPACE": release_namespace,
            "KEVENTING_WEBHOOK_SECRET": f"{release}-keventing-webhook-certs",
            "KEVENTING_WEBHOOK_OWNER": f"{release}-keventing-controller",
            **env,
        },
    )


def _webhook_registered(kubectl: Kubectl, port: int) -> bool:
    listed = json.loads(kubectl.run("get", "mutatingwebhookconfigurations", "-o", "json").stdout)
    urls = [w["clientConfig"].get("url", "") for item in listed["items"] for w in item["webhooks"]]
    return any(f"127.0.0.1:{port}" in url for url in urls)


def _wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return result


def _deployment(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, **labels}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "example/app", "env": [{"name": "KEPT", "value": "yes"}]},
                        {"name": "sidecar", "image": "example/sidecar"},
                    ]
                },
            },
        },
    }


def _sink_binding(name: str, namespace: str, subject: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "SinkBinding",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "subject": {"apiVersion": "apps/v1", "kind": "Deployment", **subject},
            "sink": {"uri": SINK},
            "ceOverrides": {"extensions": {"team": "orders"}},
        },
    }


def _env(kubectl: Kubectl, name: str, namespace: str) -> list[dict[str, str]]:
    deployment = kubectl.get("deployment", name, namespace)
    assert deployment is not None, f"Deployment {name} does not exist"
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return [{v["name"]: v.get("value") for v in c.get("env", [])} for c in containers]


def _bound(env: dict[str, str | None]) -> bool:
    return env.get("K_SINK") == SINK and env.get("K_CE_OVERRIDES") == '{"extensions":{"team":"orders"}}'


def test_sink_binding_by_selector_binds_existing_and_new_deployments_and_unbinds_when_deleted(
    binding_stack: Stack, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(_deployment("before", namespace, {"bind": "me"}), _deployment("other", namespace, {}))
    kubectl.apply(_sink_binding("orders", namespace, {"selector": {"matchLabels": {"bind": "me"}}}))
    binding = kubectl.wait_ready("sinkbinding", "orders", namespace)
    assert binding["status"]["sinkUri"] == SINK
    assert "SinkProvided" in {c["type"] for c in binding["status"]["conditions"]}

    # An existing Deployment: patched by the operator, in every container, keeping the container's own env.
    envs = _wait_for(
        lambda: (e := _env(kubectl, "before", namespace)) and all(map(_bound, e)) and e, "binding"
    )
    assert envs[0]["KEPT"] == "yes"
    # A Deployment created afterwards: bound on admission, by the API server calling the webhook.
    kubectl.apply(_deployment("after", namespace, {"bind": "me"}))
    assert all(_bound(env) for env in _env(kubectl, "after", namespace))
    # The selector is honoured: a Deployment without the label is left as it is.
    assert _env(kubectl, "other", namespace) == [{"KEPT": "yes"}, {}]

    kubectl.run("delete", "sinkbinding", "orders", "-n", namespace, "--wait=true", "--timeout=60s")
    for name in ("before", "after"):
        assert _env(kubectl, name, namespace) == [{"KEPT": "yes"}, {}], name
    # Once deleted, new Deployments are no longer bound.
    kubectl.apply(_deployment("later", namespace, {"bind": "me"}))
    assert _env(kubectl, "later", namespace) == [{"KEPT": "yes"}, {}]


def test_sink_binding_by_name_follows_a_changed_subject(
    binding_stack: Stack, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(_deployment("first", namespace, {}), _deployment("second", namespace, {}))
    kubectl.apply(_sink_binding("named", namespace, {"name": "first"}))
    _wait_for(lambda: all(map(_bound, _env(kubectl, "first", namespace))), "the first Deployment bound")
    kubectl.apply(_sink_binding("named", namespace, {"name": "second"}))
    _wait_for(lambda: all(map(_bound, _env(kubectl, "second", namespace))), "the second Deployment bound")
    _wait_for(lambda: _env(kubectl, "first", namespace) == [{"KEPT": "yes"}, {}], "the first one unbound")


def test_container_source_generates_an_owned_bound_deployment_collected_with_it(
    binding_stack: Stack, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(
        {
            "apiVersion": "sources.knative.dev/v1",
            "kind": "ContainerSource",
            "metadata": {"name": "heartbeats", "namespace": namespace},
            "spec": {
                "template": {"spec": {"containers": [{"name": "beat", "image": "example/heartbeats"}]}},
                "sink": {"uri": SINK},
                "ceOverrides": {"extensions": {"team": "orders"}},
            },
        }
    )
    source = kubectl.wait_ready("containersource", "heartbeats", namespace)
    assert source["status"]["sinkUri"] == SINK
    uid = source["metadata"]["uid"]

    binding = kubectl.wait_ready("sinkbinding", "heartbeats-sinkbinding", namespace)
    assert binding["spec"]["subject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "heartbeats-deployment",
    }
    deployment = _wait_for(
        lambda: kubectl.get("deployment", "heartbeats-deployment", namespace), "Deployment"
    )
    for owned in (deployment, binding):
        assert [(o["uid"], o.get("controller")) for o in owned["metadata"]["ownerReferences"]] == [
            (uid, True)
        ]
    _wait_for(lambda: all(map(_bound, _env(kubectl, "heartbeats-deployment", namespace))), "bound Deployment")

    kubectl.run("delete", "containersource", "heartbeats", "-n", namespace, "--wait=true", "--timeout=60s")
    _wait_for(
        lambda: (
            kubectl.get("deployment", "heartbeats-deployment", namespace) is None
            and kubectl.get("sinkbinding", "heartbeats-sinkbinding", namespace) is None
        ),
        "the ContainerSource's Deployment and SinkBinding to be garbage-collected",
    )


def test_event_types_are_served_in_v1beta3_beside_v1beta2_through_the_conversion_webhook(
    binding_stack: Stack, kubectl: Kubectl, namespace: str
) -> None:
    broker = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}
    kubectl.apply(
        {
            "apiVersion": "eventing.knative.dev/v1beta2",
            "kind": "EventType",
            "metadata": {"name": "older", "namespace": namespace},
            "spec": {"type": "order.created", "source": "/shop", "reference": broker},
        },
        {
            "apiVersion": "eventing.knative.dev/v1beta3",
            "kind": "EventType",
            "metadata": {"name": "newer", "namespace": namespace},
            "spec": {
                "reference": broker,
                "attributes": [
                    {"name": "type", "value": "order.shipped", "required": True},
                    {"name": "source", "value": "/warehouse", "required": True},
                ],
            },
        },
    )
    as_v1beta3 = {
        e["metadata"]["name"]: e for e in kubectl.list("eventtypes.v1beta3.eventing.knative.dev", namespace)
    }
    assert as_v1beta3["older"]["spec"]["attributes"] == [
        {"name": "type", "value": "order.created", "required": True},
        {"name": "source", "value": "/shop", "required": True},
    ]
    assert "type" not in as_v1beta3["older"]["spec"]
    as_v1beta2 = {
        e["metadata"]["name"]: e for e in kubectl.list("eventtypes.v1beta2.eventing.knative.dev", namespace)
    }
    assert (as_v1beta2["newer"]["spec"]["type"], as_v1beta2["newer"]["spec"]["source"]) == (
        "order.shipped",
        "/warehouse",
    )
    # kubectl's default version is v1beta3: its printer columns read the attributes.
    table = kubectl.run("get", "eventtypes", "-n", namespace).stdout
    assert "order.created" in table and "/warehouse" in table, table


# Last in the module: its operators register the EventType conversion at their own URL, which the
# module's operator does not take back.
def test_the_standby_replica_serves_the_webhook_with_the_shared_certificate(
    kafka: str,
    kube_cluster: LocalCluster,
    kubectl: Kubectl,
    tmp_path_factory: pytest.TempPathFactory,
    namespace: str,
) -> None:
    # The webhook is registered at the standby's port only: every admission goes to the replica that does
    # not lead, as it would half of the time through the chart's Service.
    standby_port = free_port()
    stack = _binder_stack(
        kafka, kube_cluster, kubectl, tmp_path_factory, webhook_url=f"https://127.0.0.1:{standby_port}"
    )
    try:
        leader = stack.start(stack.service("controller", KEVENTING_WEBHOOK_PORT=str(free_port())))
        stack.wait_ready(timeout=90, names=["controller"])
        port = free_port()
        standby = Service(
            "standby",
            [*kev_command(), "controller"],
            f"http://127.0.0.1:{port}/readyz",
            {"KEVENTING_CONTROLLER_PORT": str(port), "KEVENTING_WEBHOOK_PORT": str(standby_port)},
        )
        stack.start(standby)
        stack.wait_ready(timeout=90, names=["standby"])
        assert leader.process is not None and standby.process is not None
        lease = _wait_for(
            lambda: kubectl.get(
                "lease",
                f"{stack.instance}-controller",
                stack.extra_env["KEVENTING_LEADER_ELECTION_NAMESPACE"],
            ),
            "the Lease",
        )
        assert lease["spec"]["holderIdentity"].endswith(f"_{leader.process.pid}")

        # One certificate for both: the registered caBundle is the Secret's CA, whoever applied it last.
        secret = kubectl.get(
            "secret",
            stack.extra_env["KEVENTING_WEBHOOK_SECRET"],
            stack.extra_env["KEVENTING_WEBHOOK_NAMESPACE"],
        )
        assert secret is not None, "no shared webhook certificate Secret"
        configuration = _wait_for(
            lambda: kubectl.get(
                "mutatingwebhookconfiguration", stack.extra_env["KEVENTING_WEBHOOK_CONFIGURATION"], ""
            ),
            "the webhook configuration",
        )
        (webhook,) = configuration["webhooks"]
        assert webhook["clientConfig"]["url"].startswith(f"https://127.0.0.1:{standby_port}/")
        assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]

        kubectl.apply(
            _sink_binding(
                "pods",
                namespace,
                {"apiVersion": "v1", "kind": "Pod", "selector": {"matchLabels": {"bind": "me"}}},
            )
        )
        kubectl.wait_ready("sinkbinding", "pods", namespace)
        # A bare Pod cannot be patched once it exists: only an admission through the standby binds it.
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "bare", "namespace": namespace, "labels": {"bind": "me"}},
            "spec": {"containers": [{"name": "main", "image": "example/app"}]},
        }

        # The standby may not have seen the binding's sinkUri yet: a Pod admitted unbound is made again.
        def bound_pod() -> bool:
            kubectl.apply(pod)
            found = kubectl.get("pod", "bare", namespace)
            env = (
                {v["name"]: v.get("value") for v in found["spec"]["containers"][0].get("env", [])}
                if found
                else {}
            )
            if _bound(env):
                return True
            kubectl.run("delete", "pod", "bare", "-n", namespace, "--wait=true", "--grace-period=0")
            return False

        _wait_for(bound_pod, "a Pod bound on admission by the standby", timeout=30)
    finally:
        stack.stop_all()


def test_the_webhook_registrations_and_the_leader_lease_go_with_the_charts_cluster_role(
    kafka: str, kube_cluster: LocalCluster, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # helm uninstall deletes the chart's ClusterRole; what the controller registered at run time is its
    # dependent, so the garbage collector (kube-controller-manager) deletes it: nothing is left refusing
    # cross-namespace Triggers, or sending every Pod's admission to a Service that is gone.
    port = free_port()
    stack = _binder_stack(
        kafka,
        kube_cluster,
        kubectl,
        tmp_path_factory,
        webhook_url=f"https://127.0.0.1:{port}",
        KEVENTING_WEBHOOK_REAPPLY_SECONDS="1",
    )
    name = stack.extra_env["KEVENTING_WEBHOOK_CONFIGURATION"]
    owner = stack.extra_env["KEVENTING_WEBHOOK_OWNER"]
    kinds = ("mutatingwebhookconfiguration", "validatingwebhookconfiguration")
    role = kubectl.get("clusterrole", owner, "")
    assert role is not None, f"no ClusterRole {owner}"
    # A Lease left unowned by an earlier version (made before it was owned): the controller adopts it.
    lease_name, lease_namespace = (
        f"{stack.instance}-controller",
        stack.extra_env["KEVENTING_WEBHOOK_NAMESPACE"],
    )
    unowned = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": lease_name, "namespace": lease_namespace},
        "spec": {},
    }
    kubectl.run("apply", "-f", "-", stdin=json.dumps(unowned))
    stack.start_all(("controller",))
    try:
        stack.wait_ready(timeout=90, names=["controller"])
        for kind in kinds:
            registered = _wait_for(lambda kind=kind: kubectl.get(kind, name, ""), f"the {kind}")
            assert registered["metadata"].get("ownerReferences") == [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "name": owner,
                    "uid": role["metadata"]["uid"],
                }
            ], registered["metadata"]
        secret_name = stack.extra_env["KEVENTING_WEBHOOK_SECRET"]
        secret_namespace = stack.extra_env["KEVENTING_WEBHOOK_NAMESPACE"]
        secret = kubectl.get("secret", secret_name, secret_namespace)
        assert secret is not None and [o["uid"] for o in secret["metadata"].get("ownerReferences", [])] == [
            role["metadata"]["uid"]
        ], secret and secret["metadata"]
        # The leader Lease (in the release namespace, as the chart sets it) is owned once the controller leads.
        lease = _wait_for(
            lambda: (
                (found := kubectl.get("lease", lease_name, lease_namespace))
                and found["metadata"].get("ownerReferences")
                and found
            ),
            "the leader Lease owned",
        )
        assert [o["uid"] for o in lease["metadata"]["ownerReferences"]] == [role["metadata"]["uid"]]
        # Deleted by hand while the controller runs: applied again.
        kubectl.run("delete", "mutatingwebhookconfiguration", name)
        _wait_for(lambda: kubectl.get("mutatingwebhookconfiguration", name, ""), "the registration back", 30)
        # helm uninstall: the role goes while the controller is still stopping, and it must not apply the
        # registrations again then (they would come back owned by nobody).
        kubectl.run("delete", "clusterrole", owner)
        for kind in kinds:
            _wait_for(
                lambda kind=kind: kubectl.get(kind, name, "") is None, f"the {kind} to go with its owner"
            )
        _wait_for(
            lambda: kubectl.get("secret", secret_name, secret_namespace) is None,
            "the webhook's certificate Secret to go with its owner",
        )
        _wait_for(
            lambda: kubectl.get("lease", lease_name, lease_namespace) is None,
            "the leader Lease to go with its owner",
        )
        time.sleep(4)  # four chances to apply them again
        assert [kind for kind in kinds if kubectl.get(kind, name, "") is not None] == []
        # The leader's next renewal finds its Lease gone, and its owner unreadable (the role's rights went
        # with it): it does not make the Lease again, ownerless.
        log_path = stack.services["controller"].log_path
        assert log_path is not None
        _wait_for(
            lambda: "the Lease is not made again" in log_path.read_text(),
            "the leader to give the Lease up",
            30,
        )
        assert kubectl.get("lease", lease_name, lease_namespace) is None
    finally:
        stack.stop_all()


async def test_a_missing_owner_stops_the_registrations_being_applied_again(
    kube_api: client.ApiClient,
) -> None:
    # With cluster-wide rights of its own (not the chart's role) the controller could still write them.
    name = f"orphan-check-{uuid.uuid4().hex[:6]}"
    configuration = webhook.webhook_configuration(name, "", url="https://127.0.0.1:1", service=None)
    admission = client.AdmissionregistrationV1Api(kube_api)
    owners = await webhook.owner_references(kube_api, "no-such-role")
    assert owners is None
    await webhook.register(kube_api, [configuration], {}, owners, again=True)
    listed = await admission.list_mutating_webhook_configuration()
    assert name not in [item.metadata.name for item in listed.items]
    # At start it is registered anyway, unowned: SinkBindings work, and the log says it outlives the release.
    await webhook.register(kube_api, [configuration], {}, owners)
    registered = await admission.read_mutating_webhook_configuration(name)
    assert not registered.metadata.owner_references
    await admission.delete_mutating_webhook_configuration(name)
