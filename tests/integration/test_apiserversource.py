"""ApiServerSource in local mode without a Kubernetes cluster: not Ready, and the reason says what to set."""

from __future__ import annotations

import time
from typing import Any


def _source(name: str, namespace: str, uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "ApiServerSource",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"resources": [{"apiVersion": "v1", "kind": "ConfigMap"}], "sink": {"uri": uri}},
    }


def test_without_a_cluster_an_apiserversource_is_not_ready_and_says_why(kev: Any, ns: str, sink: Any) -> None:
    # The session's stack runs its sources runner without KUBECONFIG: local mode with no cluster at all.
    kev.apply(_source("nowhere", ns, sink.url(f"nowhere-{ns}")))
    deadline = time.monotonic() + 60
    while True:
        source = kev.get("ApiServerSource", "nowhere", ns)
        ready = source.status.condition("Ready") if source is not None else None
        if ready is not None and ready.status == "False":
            break
        assert time.monotonic() < deadline, f"not reported: {source}"
        time.sleep(0.2)
    assert ready.reason == "NoCluster"
    assert "KUBECONFIG" in (ready.message or "")
