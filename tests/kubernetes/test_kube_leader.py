"""Leader election and outages on a real kube-apiserver: one operator replica leads, a standby takes over.

Each test runs its own operators (`kev controller --kubernetes`, the chart's ServiceAccount) under a fresh
instance name, so each has a Lease of its own in the release namespace.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubectl import RELEASE_NAMESPACE, Kubectl

from kev.cluster.launcher import LocalCluster
from kev.kafka.embedded import free_port
from kev.stack import Service, Stack, kev_command

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(300)]


class Operators:
    """Controllers of one instance, each its own process; the Lease says which one leads."""

    def __init__(self, stack: Stack, kubectl: Kubectl) -> None:
        self.stack = stack
        self.kubectl = kubectl

    @property
    def lease_name(self) -> str:
        return f"{self.stack.instance}-controller"

    def start(self, name: str, **env: str) -> Service:
        port = free_port()
        service = Service(
            name,
            [*kev_command(), "controller"],
            f"http://127.0.0.1:{port}/readyz",
            {"KEVENTING_CONTROLLER_PORT": str(port), **env},
        )
        return self.stack.start(service)

    def lease(self) -> dict[str, Any]:
        found = self.kubectl.get("lease", self.lease_name, RELEASE_NAMESPACE)
        assert found is not None, f"no Lease {RELEASE_NAMESPACE}/{self.lease_name}"
        return found

    def wait_leader(self, *candidates: str, timeout: float = 60.0) -> str:
        """The candidate whose pid holds the Lease, once one does."""
        pids = {self.pid(name): name for name in candidates}
        deadline = time.monotonic() + timeout
        holder = None
        while time.monotonic() < deadline:
            lease = self.kubectl.get("lease", self.lease_name, RELEASE_NAMESPACE)
            holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
            if holder and int(holder.rsplit("_", 1)[1]) in pids:
                return pids[int(holder.rsplit("_", 1)[1])]
            time.sleep(0.25)
        raise AssertionError(f"none of {candidates} holds the Lease in {timeout} s; holder: {holder}")

    def pid(self, name: str) -> int:
        process = self.stack.services[name].process
        assert process is not None
        return process.pid

    def log(self, name: str) -> str:
        path = self.stack.services[name].log_path
        return path.read_text() if path else ""


@pytest.fixture
def operators(
    operator_env: dict[str, str], kafka: str, kubectl: Kubectl, tmp_path: Path
) -> Iterator[Operators]:
    stack = Stack(
        bootstrap_servers=kafka,
        log_dir=tmp_path / "logs",
        instance=f"leader-{uuid.uuid4().hex[:8]}",
        extra_env=operator_env,
    )
    try:
        yield Operators(stack, kubectl)
    finally:
        stack.stop_all()


def _broker(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": namespace},
    }


def _trigger(name: str, namespace: str, broker: str) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"broker": broker, "subscriber": {"uri": "http://127.0.0.1:1/"}},
    }


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_a_standby_takes_over_within_seconds_when_the_leader_is_killed(
    operators: Operators, kubectl: Kubectl, namespace: str
) -> None:
    operators.start("controller-a")
    operators.start("controller-b")
    operators.stack.wait_ready(timeout=90)
    leader = operators.wait_leader("controller-a", "controller-b")
    standby = "controller-b" if leader == "controller-a" else "controller-a"
    # The standby is ready too: ready to take over, which is all it can be while it does not lead.
    assert _ready(operators.stack.services[standby].health_url or "")
    assert "standing by" in operators.log(standby)
    kubectl.apply(_broker("default", namespace))
    kubectl.wait_ready("broker", "default", namespace)
    transitions = operators.lease()["spec"].get("leaseTransitions", 0)

    operators.stack.stop(leader, signal.SIGKILL)
    killed = time.monotonic()
    kubectl.apply(_trigger("after-failover", namespace, "default"))
    kubectl.wait_ready("trigger", "after-failover", namespace, timeout=30)
    assert time.monotonic() - killed < 30
    assert operators.wait_leader(standby, timeout=1) == standby
    assert operators.lease()["spec"]["leaseTransitions"] == transitions + 1


def test_a_leader_stopped_cleanly_hands_the_lease_over_without_waiting_for_it_to_expire(
    operators: Operators,
) -> None:
    operators.start("controller-a")
    operators.start("controller-b")
    operators.stack.wait_ready(timeout=90)
    leader = operators.wait_leader("controller-a", "controller-b")
    standby = "controller-b" if leader == "controller-a" else "controller-a"
    stopped = time.monotonic()
    operators.stack.stop(leader, signal.SIGTERM)
    assert "released the leader Lease" in operators.log(leader)
    # Well inside the 15 s a standby waits for an unreleased Lease to expire.
    assert operators.wait_leader(standby, timeout=10) == standby
    assert time.monotonic() - stopped < 15


def test_a_leader_whose_lease_is_taken_exits_non_zero(operators: Operators, kubectl: Kubectl) -> None:
    operators.start("controller")
    operators.stack.wait_ready(timeout=90)
    operators.wait_leader("controller")
    lease = operators.lease()
    lease["spec"]["holderIdentity"] = "intruder_1"
    # The write carries the resourceVersion just read: it is refused if the leader renewed meanwhile.
    kubectl.run("replace", "-f", "-", stdin=json.dumps(lease))
    process = operators.stack.services["controller"].process
    assert process is not None
    assert process.wait(timeout=30) == 1
    assert "lost the leader Lease" in operators.log("controller")
    assert operators.lease()["spec"]["holderIdentity"] == "intruder_1"


def test_the_operator_survives_an_apiserver_restart_and_misses_no_change_after_it(
    operators: Operators, kube_cluster: LocalCluster, kubectl: Kubectl, namespace: str
) -> None:
    # A Lease longer than the outage: the leader keeps leading rather than exit (a pod would restart).
    operators.start("controller", KEVENTING_LEADER_ELECTION_LEASE_SECONDS="120")
    operators.stack.wait_ready(timeout=90)
    kubectl.apply(_broker("default", namespace))
    kubectl.wait_ready("broker", "default", namespace)

    kube_cluster.stop_apiserver()
    try:
        assert kubectl.run("get", "brokers", "-n", namespace, check=False).returncode != 0
    finally:
        kube_cluster.start_apiserver()

    kubectl.apply(_trigger("after-restart", namespace, "default"))
    kubectl.wait_ready("trigger", "after-restart", namespace, timeout=90)
    kubectl.apply(_broker("second", namespace))
    kubectl.wait_ready("broker", "second", namespace, timeout=60)
    process = operators.stack.services["controller"].process
    assert process is not None and process.poll() is None
    assert operators.wait_leader("controller", timeout=1) == "controller"
