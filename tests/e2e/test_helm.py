"""The Helm chart, installed for real on a one-node cluster (`kev cluster up --node`; root).

The cluster's node runs the images deploy/e2e/setup.sh built, imported into its containerd (no registry),
and Kafka as a pod (deploy/e2e/kafka.yaml). The tests run in file order on one release: install, the
quickstart's first event, an upgrade and a rolling restart under load (sent and received counts printed),
uninstall.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from kev.cluster.launcher import LocalCluster
from kev.cluster.node import NETNS
from kev.cluster.toolchain import Toolchain

from .conftest import ROOT, podman, wait_for

RELEASE = "keventing"
NAMESPACE = "keventing"
CHART = ROOT / "charts" / "keventing"
COMPONENTS = ("controller", "receiver", "dispatcher", "sources", "event-display", "console")
EVENT_ID = re.compile(r"^\s*id: (\S+)\s*$", re.MULTILINE)


@dataclass
class Cluster:
    local: LocalCluster
    toolchain: Toolchain

    def _run(self, tool: str, *args: str, timeout: float, check: bool) -> subprocess.CompletedProcess[str]:
        # HOME: kubectl's and Helm's caches go in the state dir, not the working directory.
        home = str(self.local.state_dir)
        env = {"KUBECONFIG": str(self.local.kubeconfig_path), "PATH": "/usr/bin:/bin", "HOME": home}
        binary = str(self.toolchain.binary(tool))
        try:
            done = subprocess.run(
                [binary, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"`{tool} {' '.join(args)}` took over {timeout:.0f} s") from exc
        if check and done.returncode != 0:
            raise AssertionError(
                f"`{tool} {' '.join(args)}` failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done

    def kubectl(
        self, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self._run("kubectl", *args, timeout=timeout, check=check)

    def helm(self, *args: str, timeout: float = 360, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("helm", *args, timeout=timeout, check=check)

    def get(self, *args: str) -> dict:  # type: ignore[type-arg]
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)  # type: ignore[no-any-return]

    def pods(self, component: str) -> list[dict]:  # type: ignore[type-arg]
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
        return self.get("pods", "-n", NAMESPACE, "-l", selector)["items"]  # type: ignore[no-any-return]

    def received_ids(self) -> set[str]:
        """The ids of every event event-display has printed."""
        logs = self.kubectl(
            "logs", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=event-display", "--tail=-1"
        ).stdout
        return set(EVENT_ID.findall(logs))

    def receiver_url(self) -> str:
        # The host routes the Service range through the node, whose kube-proxy translates the ClusterIP.
        service = self.get("service", "-n", NAMESPACE, f"{RELEASE}-receiver")
        return f"http://{service['spec']['clusterIP']}/default/default"


def _ready(pod: dict) -> bool:  # type: ignore[type-arg]
    conditions = pod.get("status", {}).get("conditions", [])
    deleting = "deletionTimestamp" in pod["metadata"]
    return not deleting and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, images: dict[str, str]) -> Iterator[Cluster]:
    """A cluster with a node, the images imported and Kafka running; stopped (nothing left) at the end."""
    toolchain = Toolchain()
    local = LocalCluster(tmp_path_factory.mktemp("helm-cluster"), node=True, progress=print)
    started = time.monotonic()
    local.start(timeout=180)
    print(f"cluster with a node up in {time.monotonic() - started:.1f} s")
    try:
        cluster = Cluster(local, toolchain)
        archives = tmp_path_factory.mktemp("images")
        for name, image in images.items():
            archive = archives / f"{name}.tar"
            began = time.monotonic()
            podman("save", "--format", "docker-archive", "-o", str(archive), image, timeout=300)
            local.import_image(archive)
            print(
                f"imported {image} ({archive.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - began:.1f} s"
            )
        manifest = (
            (ROOT / "deploy" / "e2e" / "kafka.yaml").read_text().replace("KAFKA_IMAGE", images["kafka"])
        )
        manifest_path = archives / "kafka.yaml"
        manifest_path.write_text(manifest)
        cluster.kubectl("apply", "-f", str(manifest_path))
        began = time.monotonic()
        cluster.kubectl("rollout", "status", "-n", "kafka", "deploy/kafka", "--timeout=180s", timeout=200)
        print(f"Kafka ready in {time.monotonic() - began:.1f} s")
        yield cluster
    finally:
        local.stop()
        assert local.running() == {}
        assert not Path(f"/run/netns/{NETNS}").exists(), "the node's network namespace outlived the cluster"
        mounts = Path("/proc/self/mountinfo").read_text()
        assert str(local.state_dir) not in mounts, "a mount of the node outlived the cluster"


def install_args(image: str) -> list[str]:
    repository, _, tag = image.rpartition(":")
    return [
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "kafka.bootstrapServers=kafka.kafka.svc.cluster.local:9092",
        # One Kafka broker: one replica of everything.
        "--set",
        "defaultTopic.replicationFactor=1",
        "--set",
        "defaultTopic.partitions=3",
        "--set",
        "eventDisplay.enabled=true",
        # The console too: its pod must become Ready on a real node (it reads the cluster's resources).
        "--set",
        "console.enabled=true",
    ]


def test_the_chart_lints_strictly_and_its_schema_rejects_bad_values(cluster: Cluster) -> None:
    cluster.helm("lint", "--strict", str(CHART))
    typo = cluster.helm("lint", str(CHART), "--set", "recevier.replicas=2", check=False)
    assert typo.returncode != 0 and "additional properties 'recevier' not allowed" in typo.stdout
    wrong_type = cluster.helm("lint", str(CHART), "--set", "dispatcher.replicas=two", check=False)
    assert wrong_type.returncode != 0 and "/dispatcher/replicas" in wrong_type.stdout


def test_helm_install_waits_until_every_pod_is_ready(cluster: Cluster, images: dict[str, str]) -> None:
    started = time.monotonic()
    installed = cluster.helm(
        "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace", "--wait", "--timeout=5m",
        *install_args(images["keventing"]),
    )  # fmt: skip
    print(f"helm install --wait took {time.monotonic() - started:.1f} s")
    # NOTES.txt tells a Kubernetes-mode user to kubectl-apply Knative YAML, with event-display as subscriber.
    assert "kubectl wait --for=condition=Ready -n default broker/default" in installed.stdout
    assert f"name: {RELEASE}-event-display, namespace: {NAMESPACE}" in installed.stdout
    budgets = {pdb["metadata"]["name"] for pdb in cluster.get("pdb", "-n", NAMESPACE)["items"]}
    assert budgets == {f"{RELEASE}-{name}" for name in ("receiver", "dispatcher", "controller")}
    for component in COMPONENTS:
        pods = cluster.pods(component)
        assert pods, f"no {component} pod"
        assert all(_ready(pod) for pod in pods), f"{component} pods not Ready: {pods}"
        for pod in pods:
            container = pod["spec"]["containers"][0]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            status = pod["status"]["containerStatuses"][0]
            if status["restartCount"]:
                name = pod["metadata"]["name"]
                previous = cluster.kubectl(
                    "logs", "-n", NAMESPACE, name, "--previous", "--tail=30", check=False
                )
                raise AssertionError(
                    f"{name} restarted ({status.get('lastState')}); its previous log ends:\n{previous.stdout}"
                )


def test_the_quickstart_broker_and_trigger_become_ready_and_an_event_reaches_event_display(
    cluster: Cluster,
) -> None:
    cluster.kubectl(
        "apply", "-f", str(ROOT / "examples" / "quickstart" / "broker.yaml"),
        "-f", str(ROOT / "examples" / "helm" / "trigger.yaml"),
    )  # fmt: skip
    cluster.kubectl(
        "wait", "--for=condition=Ready", "-n", "default", "broker/default", "trigger/event-display",
        "--timeout=120s", timeout=130,
    )  # fmt: skip
    broker = cluster.get("broker", "-n", "default", "default")
    assert broker["status"]["address"]["url"] == (
        f"http://{RELEASE}-receiver.{NAMESPACE}.svc.cluster.local/default/default"
    )
    response = httpx.post(
        cluster.receiver_url(),
        headers={
            "Ce-Id": "helm-hello",
            "Ce-Specversion": "1.0",
            "Ce-Type": "com.example.hello",
            "Ce-Source": "tests/e2e/test_helm",
            "Content-Type": "application/json",
        },
        content=b'{"msg":"Hello from the cluster"}',
        timeout=10,
    )
    assert response.status_code == 202, response.text
    wait_for(lambda: "helm-hello" in cluster.received_ids(), 60, "the event in event-display's log")


@dataclass
class Load:
    """Sends events at ``rate`` per second with unique ids, each retried until the receiver accepts it (a
    producer's duty when a pod goes away under it); ``accepted`` holds the ids answered 202."""

    url: str
    prefix: str
    rate: float = 20.0
    accepted: list[str] = field(default_factory=list)
    retries: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self._run, name=f"load-{self.prefix}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=120)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            sequence = 0
            while not self._stop.is_set():
                began = time.monotonic()
                event_id = f"{self.prefix}-{sequence:05d}"
                sequence += 1
                deadline = began + 60
                while time.monotonic() < deadline:
                    try:
                        response = client.post(self.url, headers=self._headers(event_id), content=b"{}")
                        if response.status_code == 202:
                            self.accepted.append(event_id)
                            break
                    except httpx.HTTPError:
                        pass
                    self.retries += 1
                    time.sleep(0.2)
                self._stop.wait(max(0.0, 1 / self.rate - (time.monotonic() - began)))

    @staticmethod
    def _headers(event_id: str) -> dict[str, str]:
        return {
            "Ce-Id": event_id,
            "Ce-Specversion": "1.0",
            "Ce-Type": "com.example.load",
            "Ce-Source": "tests/e2e/test_helm",
            "Content-Type": "application/json",
        }


def _all_delivered(cluster: Cluster, load: Load, what: str) -> None:
    accepted = set(load.accepted)
    assert len(accepted) > 50, f"only {len(accepted)} events accepted during {what}"
    try:
        wait_for(lambda: accepted <= cluster.received_ids(), 180, f"every event sent during {what}", every=3)
    finally:
        received = cluster.received_ids() & accepted
        print(
            f"{what}: {len(accepted)} events accepted ({load.retries} retried sends), {len(received)} "
            f"received by event-display, {len(accepted - received)} lost"
        )


def _pod_names(cluster: Cluster, component: str) -> set[str]:
    return {pod["metadata"]["name"] for pod in cluster.pods(component)}


def _contract_key(cluster: Cluster) -> str:
    """The contract key's Secret as the chart made it (base64)."""
    jsonpath = "jsonpath={.data.contract-key}"
    return cluster.kubectl("get", "secret", f"{RELEASE}-contract-key", "-n", NAMESPACE, "-o", jsonpath).stdout


def test_helm_upgrade_rolls_the_pods_without_losing_events(cluster: Cluster) -> None:
    before = {component: _pod_names(cluster, component) for component in ("receiver", "dispatcher")}
    key = _contract_key(cluster)
    assert key
    with Load(cluster.receiver_url(), "upgrade") as load:
        wait_for(lambda: len(load.accepted) >= 40, 30, "the load to start")
        started = time.monotonic()
        cluster.helm(
            "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values", "--wait", "--timeout=5m",
            "--set", "dispatcher.maxInFlight=20", "--set", "receiver.maxEventBytes=524288",
        )  # fmt: skip
        print(f"helm upgrade --wait took {time.monotonic() - started:.1f} s")
        sent_during = len(load.accepted)
        wait_for(lambda: len(load.accepted) >= sent_during + 40, 30, "events after the upgrade")
    for component, old in before.items():
        # helm's --wait waits for the new pods, not for the old ones to be gone: a terminating one may
        # still be listed for its grace period.
        gone = lambda component=component, old=old: not (_pod_names(cluster, component) & old)  # noqa: E731
        wait_for(gone, 90, f"the old {component} pods to go")
        assert _pod_names(cluster, component), f"no {component} pods after the upgrade"
    _all_delivered(cluster, load, "helm upgrade")
    assert _contract_key(cluster) == key  # the new pods verify what the controller signs


def test_a_rolling_restart_of_the_dispatcher_under_load_loses_nothing(cluster: Cluster) -> None:
    before = _pod_names(cluster, "dispatcher")
    with Load(cluster.receiver_url(), "restart") as load:
        wait_for(lambda: len(load.accepted) >= 40, 30, "the load to start")
        deployment = f"deploy/{RELEASE}-dispatcher"
        cluster.kubectl("rollout", "restart", "-n", NAMESPACE, deployment)
        cluster.kubectl("rollout", "status", "-n", NAMESPACE, deployment, "--timeout=180s", timeout=200)
        sent_during = len(load.accepted)
        wait_for(lambda: len(load.accepted) >= sent_during + 40, 30, "events after the restart")
    wait_for(lambda: not (_pod_names(cluster, "dispatcher") & before), 90, "the old dispatcher pods to go")
    _all_delivered(cluster, load, "kubectl rollout restart of the dispatcher")


def test_helm_uninstall_removes_everything_the_chart_created(cluster: Cluster) -> None:
    manifest = cluster.helm("get", "manifest", RELEASE, "-n", NAMESPACE).stdout
    objects = [
        (kind, name)
        for kind, name in re.findall(r"^kind: (\w+)\nmetadata:\n  name: (\S+)", manifest, re.MULTILINE)
    ]
    assert len(objects) > 10, manifest
    # As a user would: the Broker and Trigger first, while the controller still runs to finalize them.
    cluster.kubectl(
        "delete", "-n", "default", "trigger/event-display", "broker/default", "--timeout=90s", timeout=100
    )
    started = time.monotonic()
    uninstalled = cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout=3m", check=False)
    if uninstalled.returncode != 0:
        state = cluster.kubectl("get", "all,pdb,sa,cm,role,rolebinding", "-n", NAMESPACE, "-o", "wide").stdout
        raise AssertionError(f"helm uninstall failed:\n{uninstalled.stderr}\nleft in {NAMESPACE}:\n{state}")
    print(f"helm uninstall --wait took {time.monotonic() - started:.1f} s")
    left = []
    for kind, name in objects:
        namespaced = ["-n", NAMESPACE]
        found = cluster.kubectl("get", kind, name, *namespaced, "--ignore-not-found", "-o", "name").stdout
        if found.strip():
            left.append(found.strip())
    assert left == [], f"left behind by helm uninstall: {left}"
    wait_for(lambda: not cluster.get("pods", "-n", NAMESPACE)["items"], 90, "the release's pods to go")
    assert not cluster.get("pdb", "-n", NAMESPACE)["items"]
    # The webhook registrations the controller made at run time are owned by the chart's ClusterRole: the
    # garbage collector deletes them after it.
    (registration,) = re.findall(
        r"- name: KEVENTING_WEBHOOK_CONFIGURATION\n\s+value: \"?([^\"\n]+)", manifest
    )
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        wait_for(
            lambda kind=kind: (
                not cluster.kubectl(
                    "get", kind, registration, "--ignore-not-found", "-o", "name"
                ).stdout.strip()
            ),
            90,
            f"the {kind} {registration} to go with the chart's ClusterRole",
        )
    (secret,) = re.findall(r"- name: KEVENTING_WEBHOOK_SECRET\n\s+value: \"?([^\"\n]+)", manifest)
    wait_for(
        lambda: (
            not cluster.kubectl(
                "get", "secret", secret, "-n", NAMESPACE, "--ignore-not-found", "-o", "name"
            ).stdout.strip()
        ),
        90,
        f"the webhook's certificate Secret {secret} to go with the chart's ClusterRole",
    )
    # So is the leader Lease the controller made at run time.
    wait_for(
        lambda: not cluster.kubectl("get", "leases", "-n", NAMESPACE, "-o", "name").stdout.split(),
        90,
        "the controller's leader Lease to go with the chart's ClusterRole",
    )
    # Helm never deletes the CRDs it installed from crds/ (the custom resources would go with them).
    assert cluster.kubectl("get", "crd", "brokers.eventing.knative.dev", "-o", "name").stdout.strip()
