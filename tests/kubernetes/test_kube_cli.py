"""``kev cluster up`` leaves a usable cluster running in the background; ``down`` leaves no process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from kev.kafka.embedded import _pid_alive
from kev.stack import kev_command

pytestmark = pytest.mark.kubernetes


def _kev_cluster(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*kev_command(), "cluster", *args], capture_output=True, text=True, timeout=timeout)


def test_up_then_kubectl_then_down_leaves_no_process(tmp_path: Path) -> None:
    state_dir = tmp_path / "cluster"
    up = _kev_cluster("up", "--state-dir", str(state_dir))
    pids = list(json.loads((state_dir / "cluster.json").read_text())["pids"].values())
    try:
        assert up.returncode == 0, up.stderr
        kubeconfig = up.stdout.strip().splitlines()[-1]
        assert Path(kubeconfig) == state_dir / "kubeconfig"
        assert len(pids) == 3 and all(_pid_alive(pid) for pid in pids)

        namespaces = _kev_cluster(
            "kubectl", "--state-dir", str(state_dir), "get", "ns", "-o", "name", timeout=60
        )
        assert namespaces.returncode == 0, namespaces.stderr
        assert "namespace/default" in namespaces.stdout.split()

        status = _kev_cluster("status", "--state-dir", str(state_dir), timeout=30)
        assert status.returncode == 0
    finally:
        down = _kev_cluster("down", "--state-dir", str(state_dir), timeout=60)
    assert down.returncode == 0, down.stderr
    assert not [pid for pid in pids if _pid_alive(pid)]
    assert _kev_cluster("status", "--state-dir", str(state_dir), timeout=30).returncode == 1
    assert os.path.exists(state_dir / "kubeconfig")  # the state dir is kept for the next `up`
