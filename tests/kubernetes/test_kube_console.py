"""`kev console` in Kubernetes mode: the resources come from a real kube-apiserver, read with the chart's
ServiceAccount (the one the chart's console pod runs as), the topics and groups from the contract on Kafka."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import start_console
from kube_stack import running_stack, send_event
from kubectl import Kubectl

from kev.stack import Stack

pytestmark = pytest.mark.kubernetes


class _StackKev:
    """What helpers.start_console needs of a test's Kev: the stack to start the console in."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack


@pytest.fixture(scope="module")
def console_stack(
    operator_env: dict[str, str], kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, str]]:
    with running_stack(kafka, tmp_path_factory.mktemp("console-kube-logs"), operator_env) as stack:
        yield stack, start_console(_StackKev(stack), "console")


def _topology(console: str, namespace: str, check: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    graph: dict[str, Any] = {}
    while time.monotonic() < deadline:
        graph = httpx.get(f"{console}/api/topology", params={"namespace": namespace}, timeout=10).json()
        if check({n["id"]: n for n in graph["nodes"]}):
            return graph
        time.sleep(0.5)
    raise AssertionError(f"the console never showed the expected topology: {graph}")


def test_console_shows_the_clusters_resources_and_tails_a_broker(
    console_stack: tuple[Stack, str], kubectl: Kubectl, namespace: str, sink: Any
) -> None:
    stack, console = console_stack
    kubectl.apply(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "default", "namespace": namespace},
        },
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "display", "namespace": namespace},
            "spec": {"broker": "default", "subscriber": {"uri": sink.url(f"kube-console-{namespace}")}},
        },
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "orphan", "namespace": namespace},
            "spec": {"broker": "missing", "subscriber": {"uri": sink.url("unused")}},
        },
    )
    broker = kubectl.wait_ready("broker", "default", namespace)
    _topology(
        console,
        namespace,
        lambda nodes: (
            nodes.get(f"Broker/{namespace}/default", {}).get("ready") == "True"
            and nodes.get(f"Trigger/{namespace}/display", {}).get("ready") == "True"
            and nodes.get(f"Trigger/{namespace}/orphan", {}).get("ready") == "False"
        ),
    )
    params = {"target": f"Broker/{namespace}/default"}
    with httpx.stream("GET", f"{console}/api/events", params=params, timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines) == "event: ready"
        event_id = send_event(stack, broker["status"]["address"]["url"], "dev.console.kube")
        data = next(line for line in lines if line.startswith("data: ") and event_id in line)
    assert json.loads(data[6:])["attributes"]["type"] == "dev.console.kube"
