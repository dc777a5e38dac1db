"""LocalCluster's failures name the component and show its log; nothing is left running after one."""

from __future__ import annotations

from pathlib import Path

import pytest

from kev.cluster.launcher import LocalCluster, LocalClusterError
from kev.cluster.toolchain import Toolchain


def _fake_toolchain(cache: Path, etcd_script: str) -> Toolchain:
    """A toolchain whose cached binaries are shell scripts: etcd runs ``etcd_script``, the rest sleep."""
    toolchain = Toolchain(cache, progress=None, env={"PATH": ""})
    for tool in toolchain.tools:
        tool.bin_dir.mkdir(parents=True)
        for name in tool.binaries:
            body = etcd_script if name == "etcd" else "exec sleep 60"
            tool.path(name).write_text(f"#!/bin/sh\n{body}\n")
            tool.path(name).chmod(0o755)
        (tool.home / ".complete").write_text(tool.name)
    return toolchain


def test_missing_binaries_without_go_fail_with_what_to_do(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "state", toolchain=Toolchain(tmp_path / "cache", env={"PATH": ""}))
    with pytest.raises(LocalClusterError, match="needs Go"):
        cluster.start()


def test_a_component_that_exits_at_startup_is_reported_with_its_log(tmp_path: Path) -> None:
    toolchain = _fake_toolchain(
        tmp_path / "cache", "echo 'etcdmain: listen tcp: address already in use'; exit 3"
    )
    cluster = LocalCluster(tmp_path / "state", toolchain=toolchain)
    with pytest.raises(LocalClusterError) as failure:
        cluster.start(timeout=20)
    assert "etcd exited with code 3" in str(failure.value)
    assert "address already in use" in str(failure.value)
    assert cluster.running() == {}


def test_a_component_that_never_gets_ready_is_stopped(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "state", toolchain=_fake_toolchain(tmp_path / "cache", "exec sleep 60"))
    with pytest.raises(LocalClusterError, match="etcd did not become ready in time"):
        cluster.start(timeout=1)
    assert cluster.running() == {}


def test_a_node_needs_root_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    cluster = LocalCluster(
        tmp_path / "state", node=True, toolchain=_fake_toolchain(tmp_path / "cache", "exit 0")
    )
    with pytest.raises(LocalClusterError, match="a cluster with a node needs root"):
        cluster.start(timeout=5)
    assert cluster.running() == {}
