"""The test cluster's pure helpers: which staging modules to pin, the version stamps, the kubeconfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from kev.cluster.pki import kubeconfig, serving_sans
from kev.cluster.toolchain import (
    Toolchain,
    ToolchainError,
    kubernetes_wrapper_go_mod,
    staging_replaces,
    staging_version,
    version_ldflags,
)

KUBERNETES_GO_MOD = """module k8s.io/kubernetes

require (
\tk8s.io/api v0.0.0
\tgithub.com/spf13/cobra v1.9.1
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tgithub.com/some/fork => github.com/other/fork v1.0.0
)
"""


def test_staging_replaces_lists_only_modules_replaced_by_local_staging_dirs() -> None:
    assert staging_replaces(KUBERNETES_GO_MOD) == ["k8s.io/api", "k8s.io/client-go"]


def test_staging_modules_are_pinned_at_v0_minor_patch() -> None:
    assert staging_version("v1.34.4") == "v0.34.4"
    with pytest.raises(ToolchainError):
        staging_version("v2.0.0")
    go_mod = kubernetes_wrapper_go_mod("v1.34.4", ["k8s.io/api"])
    assert "require k8s.io/kubernetes v1.34.4" in go_mod
    assert "\tk8s.io/api => k8s.io/api v0.34.4" in go_mod


def test_version_ldflags_stamp_server_and_client_versions_and_strip() -> None:
    flags = version_ldflags("v1.34.4")
    assert flags.startswith("-s -w ")
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {package}.gitVersion=v1.34.4" in flags
        assert f"-X {package}.gitMajor=1" in flags
        assert f"-X {package}.gitMinor=34" in flags


def test_binaries_are_cached_per_tool_and_version_under_the_cache_dir(tmp_path: Path) -> None:
    toolchain = Toolchain(tmp_path, progress=None)
    assert toolchain.kubernetes.path("kubectl") == tmp_path / "kubernetes" / "v1.34.4" / "bin" / "kubectl"
    assert toolchain.helm.path("helm") == tmp_path / "helm" / "v3.19.5" / "bin" / "helm"
    assert not toolchain.cached


def test_a_tool_without_its_marker_is_not_cached_even_if_binaries_exist(tmp_path: Path) -> None:
    helm = Toolchain(tmp_path, progress=None).helm
    helm.bin_dir.mkdir(parents=True)
    helm.path("helm").write_text("half-written")
    assert not helm.cached
    (helm.home / ".complete").write_text("helm")
    assert helm.cached


def test_missing_go_is_a_clear_error(tmp_path: Path) -> None:
    toolchain = Toolchain(tmp_path, progress=None, env={"PATH": str(tmp_path)})
    with pytest.raises(ToolchainError, match="needs Go"):
        toolchain.binary("helm")


def test_kubeconfig_uses_the_admin_token_and_our_ca(tmp_path: Path) -> None:
    document = kubeconfig(server="https://127.0.0.1:6443", ca_cert=tmp_path / "ca.crt", token="t0k")
    assert document["clusters"][0]["cluster"] == {
        "server": "https://127.0.0.1:6443",
        "certificate-authority": str(tmp_path / "ca.crt"),
    }
    assert document["users"][0]["user"] == {"token": "t0k"}
    assert "IP:10.0.0.1" in serving_sans("10.0.0.1")
