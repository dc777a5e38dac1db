"""`kev up --kubernetes --demo` against the test cluster: CRDs, the quickstart and the first event."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from kev.cluster.launcher import LocalCluster
from kev.stack import kev_command

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]


def test_kev_up_kubernetes_demo_applies_the_quickstart_to_the_cluster_and_shows_the_event(
    kafka: str, kube_cluster: LocalCluster, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "KEVENTING_INSTANCE": f"kubedemo-{uuid.uuid4().hex[:6]}",
        "KEVENTING_LOG_DIR": str(tmp_path / "logs"),
    }
    result = subprocess.run(
        [*kev_command(), "up", "--demo", "--kubernetes", "--kubeconfig", str(kube_cluster.kubeconfig_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "applied Trigger/default/event-display" in output
    assert "id: say-hello" in output
    assert "202 Accepted" in output
