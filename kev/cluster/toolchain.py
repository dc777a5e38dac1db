"""Build and cache the test cluster's binaries (etcd, Kubernetes control plane and node, kubectl, Helm) from Go.

Nothing is downloaded as a release archive: every binary is compiled from the Go module proxy at a pinned
version, once, into the user's cache dir (like the embedded Kafka's jars)::

    <cache>/kubernetes/v1.34.4/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl}
    <cache>/etcd/v3.5.21/bin/etcd
    <cache>/helm/v3.19.5/bin/helm

A ``.complete`` marker is written only after every binary of a tool was built, and a lock file serialises
concurrent builders, so the second caller just waits and finds the binaries. ``python -m
kev.cluster.toolchain build`` (``make cluster-tools``) builds everything with progress on stderr.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# One cache root and one locking scheme for everything keventing downloads or builds (see the Kafka jars).
from kev.kafka.embedded import _file_lock, default_cache_dir, tail

__all__ = [
    "ETCD_VERSION",
    "HELM_VERSION",
    "KUBERNETES_VERSION",
    "Progress",
    "Tool",
    "ToolchainError",
    "Toolchain",
    "staging_replaces",
    "version_ldflags",
]

#: Pinned so the cache path is known up front and every developer tests against the same cluster.
KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.5.21"
HELM_VERSION = "v3.19.5"

#: The control plane, the node (``kev cluster up --node``: scheduler, kubelet, kube-proxy) and kubectl.
KUBERNETES_BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)
#: Knative Eventing's Go module (Knative 1.20): its CRDs, for the tests that keventing works with them.
KNATIVE_EVENTING_MODULE = "knative.dev/eventing"
KNATIVE_EVENTING_VERSION = "v0.47.0"
KNATIVE_CRD_DIRS = ("config/core/resources", "config/channels/in-memory-channel/resources")

_MARKER = ".complete"
_HEARTBEAT = 30.0  # seconds between "still building…" lines while Go compiles quietly
_REPLACE_BLOCK = re.compile(r"^replace\s*\((.*?)^\)", re.MULTILINE | re.DOTALL)
_LOCAL_REPLACE = re.compile(r"^\s*(k8s\.io/[\w.\-/]+)\s*=>\s*\./staging/", re.MULTILINE)

Progress = Callable[[str], None]


class ToolchainError(RuntimeError):
    """A cluster binary is missing and could not be built (no Go, proxy unreachable, compile error)."""


# --------------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------------


def staging_replaces(kubernetes_go_mod: str) -> list[str]:
    """The staging modules k8s.io/kubernetes replaces with its own ``./staging`` dirs, from its go.mod text.

    A module that requires k8s.io/kubernetes must pin each of these itself: the replace directives of a
    dependency are ignored, and the staging modules are required there at the placeholder v0.0.0.
    """
    block = _REPLACE_BLOCK.search(kubernetes_go_mod)
    text = block.group(1) if block else kubernetes_go_mod
    return sorted(set(_LOCAL_REPLACE.findall(text)))


def staging_version(kubernetes_version: str) -> str:
    """Staging modules are tagged v0.<minor>.<patch> for Kubernetes v1.<minor>.<patch>."""
    major, minor, patch = kubernetes_version.lstrip("v").split(".", 2)
    if major != "1":
        raise ToolchainError(f"unsupported Kubernetes version {kubernetes_version!r}: expected v1.x.y")
    return f"v0.{minor}.{patch}"


def version_ldflags(kubernetes_version: str) -> str:
    """``-ldflags`` that stamp the version into the binaries; unstamped ones report v0.0.0-master.

    Both packages matter: the server reports component-base's, kubectl and clients report client-go's.
    """
    major, minor, _ = kubernetes_version.lstrip("v").split(".", 2)
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={kubernetes_version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
            f"-X {package}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def kubernetes_wrapper_go_mod(kubernetes_version: str, staging: Sequence[str]) -> str:
    """go.mod of the throwaway module that builds k8s.io/kubernetes' commands."""
    pinned = staging_version(kubernetes_version)
    lines = ["module keventing.local/kubernetes-build", "", "go 1.24.0", ""]
    lines.append(f"require k8s.io/kubernetes {kubernetes_version}")
    lines.append("")
    lines.append("replace (")
    lines += [f"\t{module} => {module} {pinned}" for module in staging]
    lines.append(")")
    return "\n".join(lines) + "\n"


def kubernetes_tools_go(binaries: Sequence[str]) -> str:
    """A never-compiled file importing each command, so ``go mod tidy`` records all their dependencies."""
    imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{name}"' for name in binaries)
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


ETCD_MAIN_GO = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """One cached tool: ``<cache>/<name>/<version>/bin/<binaries>``."""

    name: str
    version: str
    binaries: tuple[str, ...]
    cache_dir: Path

    @property
    def home(self) -> Path:
        return self.cache_dir / self.name / self.version

    @property
    def bin_dir(self) -> Path:
        return self.home / "bin"

    def path(self, binary: str) -> Path:
        return self.bin_dir / binary

    @property
    def cached(self) -> bool:
        return (self.home / _MARKER).exists() and all(self.path(b).exists() for b in self.binaries)


class Toolchain:
    """The pinned cluster binaries; :meth:`ensure` builds whichever are not cached yet."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        progress: Progress | None = _stderr_progress,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.cache_dir = cache_dir or default_cache_dir()
        self._progress = progress
        self._env = dict(os.environ if env is None else env)
        self._started = time.monotonic()
        self.kubernetes = Tool("kubernetes", KUBERNETES_VERSION, KUBERNETES_BINARIES, self.cache_dir)
        self.etcd = Tool("etcd", ETCD_VERSION, ("etcd",), self.cache_dir)
        self.helm = Tool("helm", HELM_VERSION, ("helm",), self.cache_dir)

    @property
    def tools(self) -> tuple[Tool, ...]:
        return (self.etcd, self.kubernetes, self.helm)

    @property
    def cached(self) -> bool:
        return all(tool.cached for tool in self.tools)

    def binary(self, name: str) -> Path:
        """Path of a cached binary, building its tool first if needed."""
        for tool in self.tools:
            if name in tool.binaries:
                self._ensure(tool)
                return tool.path(name)
        raise ToolchainError(f"no tool provides {name!r}")

    def ensure(self) -> None:
        """Build every tool that is not cached yet (a no-op when all are)."""
        for tool in self.tools:
            self._ensure(tool)
        self.knative_crds()

    def knative_crds(self) -> Path:
        """The directory of Knative Eventing's own CRDs (pinned), fetched once from the Go module proxy."""
        home = self.cache_dir / "knative-eventing" / KNATIVE_EVENTING_VERSION
        crds = home / "crds"
        if (home / _MARKER).exists():
            return crds
        with _file_lock(home / ".lock", on_wait=lambda: self._say("waiting for another Knative download…")):
            if (home / _MARKER).exists():
                return crds
            if shutil.which("go", path=self._env.get("PATH")) is None:
                raise ToolchainError(f"fetching Knative's CRDs into {crds} needs Go on PATH")
            log = home / "logs" / "download.log"
            module = f"{KNATIVE_EVENTING_MODULE}@{KNATIVE_EVENTING_VERSION}"
            self._go(["mod", "download", "-json", module], cwd=home, step=f"downloading {module}", log=log)
            source = Path(json.loads(log.read_text())["Dir"])
            crds.mkdir(parents=True, exist_ok=True)
            for directory in KNATIVE_CRD_DIRS:
                for path in sorted((source / directory).glob("*.yaml")):
                    if "kind: CustomResourceDefinition" in path.read_text():
                        shutil.copyfile(path, crds / path.name)
            (home / _MARKER).write_text(f"{module}\n")
            self._say(f"Knative's CRDs ({module}) cached in {crds}")
        return crds

    # ----------------------------------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        if self._progress is not None:
            self._progress(f"[{_elapsed(time.monotonic() - self._started):>6}] {message}")

    def _ensure(self, tool: Tool) -> None:
        if tool.cached:
            return
        with _file_lock(
            tool.home / ".lock", on_wait=lambda: self._say(f"waiting for another build of {tool.name}…")
        ):
            if tool.cached:  # the other builder finished while we waited
                return
            if shutil.which("go", path=self._env.get("PATH")) is None:
                raise ToolchainError(
                    f"{tool.name} {tool.version} is not cached in {tool.home} and building it needs Go "
                    "(1.24 or newer) on PATH: install Go, or copy a cache built elsewhere"
                )
            builders = {
                "kubernetes": self._build_kubernetes,
                "etcd": self._build_etcd,
                "helm": self._build_helm,
            }
            (tool.home / _MARKER).unlink(missing_ok=True)
            builders[tool.name](tool)
            (tool.home / _MARKER).write_text(f"{tool.name} {tool.version}\n")
            self._say(f"{tool.name} {tool.version} cached in {tool.bin_dir}")

    def _go(
        self, args: Sequence[str], *, cwd: Path, step: str, log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        """Run one ``go`` command quietly into ``log``, saying what it does and that it is still at it."""
        self._say(step)
        # Static binaries need no C toolchain; GOWORK=off keeps a user's go.work out of the wrapper modules.
        env = {"CGO_ENABLED": "0", **self._env, **(env or {}), "GOWORK": "off"}
        started = time.monotonic()
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            proc = subprocess.Popen(["go", *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
            while True:
                try:
                    code = proc.wait(timeout=_HEARTBEAT)
                    break
                except subprocess.TimeoutExpired:
                    self._say(
                        f"  … still {step[0].lower()}{step[1:]} ({_elapsed(time.monotonic() - started)})"
                    )
                except BaseException:
                    proc.kill()  # Ctrl-C: do not leave a compiler running behind us
                    proc.wait()
                    raise
        if code != 0:
            raise ToolchainError(
                f"`go {' '.join(args)}` failed (exit {code}) in {cwd}; log {log}:\n{tail(log, 30)}"
            )

    def _build_kubernetes(self, tool: Tool) -> None:
        src = tool.home / "src"
        src.mkdir(parents=True, exist_ok=True)
        logs = tool.home / "logs"
        go_mod = self._module_go_mod(f"k8s.io/kubernetes@{tool.version}", src, logs)
        staging = staging_replaces(go_mod.read_text())
        if not staging:
            raise ToolchainError(f"found no staging replace directives in {go_mod}")
        (src / "go.mod").write_text(kubernetes_wrapper_go_mod(tool.version, staging))
        (src / "tools.go").write_text(kubernetes_tools_go(tool.binaries))
        self._go(
            ["mod", "tidy"],
            cwd=src,
            step="resolving Kubernetes' Go modules (first time)",
            log=logs / "tidy.log",
        )
        tool.bin_dir.mkdir(parents=True, exist_ok=True)
        ldflags = version_ldflags(tool.version)
        # A binary is renamed into place only once built, so one that exists is complete: a cache built
        # before a binary joined the list (the node's) builds just the new ones.
        for name in [name for name in tool.binaries if not tool.path(name).exists()]:
            partial = tool.path(name).with_suffix(".partial")
            self._go(
                [
                    "build",
                    "-trimpath",
                    "-ldflags",
                    ldflags,
                    "-o",
                    str(partial),
                    f"k8s.io/kubernetes/cmd/{name}",
                ],
                cwd=src,
                step=f"building {name} {tool.version} (first time, several minutes)",
                log=logs / f"{name}.log",
            )
            partial.rename(tool.path(name))

    def _module_go_mod(self, module: str, cwd: Path, logs: Path) -> Path:
        """Download ``module@version`` from the proxy and return its go.mod file."""
        log = logs / "download.log"
        self._go(["mod", "download", "-json", module], cwd=cwd, step=f"downloading {module}", log=log)
        info = json.loads(log.read_text())
        return Path(info["GoMod"])

    def _build_etcd(self, tool: Tool) -> None:
        src = tool.home / "src"
        src.mkdir(parents=True, exist_ok=True)
        logs = tool.home / "logs"
        (src / "go.mod").write_text(
            f"module keventing.local/etcd-build\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 {tool.version}\n"
        )
        (src / "main.go").write_text(ETCD_MAIN_GO)
        self._go(
            ["mod", "tidy"], cwd=src, step="resolving etcd's Go modules (first time)", log=logs / "tidy.log"
        )
        tool.bin_dir.mkdir(parents=True, exist_ok=True)
        self._go(
            ["build", "-trimpath", "-ldflags", "-s -w", "-o", str(tool.path("etcd")), "."],
            cwd=src,
            step=f"building etcd {tool.version} (first time, a minute or two)",
            log=logs / "etcd.log",
        )

    def _build_helm(self, tool: Tool) -> None:
        # Helm has no replace directives, so plain `go install module@version` works for it.
        tool.bin_dir.mkdir(parents=True, exist_ok=True)
        self._go(
            [
                "install",
                "-trimpath",
                "-ldflags",
                f"-s -w -X helm.sh/helm/v3/internal/version.version={tool.version}",
                f"helm.sh/helm/v3/cmd/helm@{tool.version}",
            ],
            cwd=tool.home,
            step=f"building helm {tool.version} (first time, a minute or two)",
            log=tool.home / "logs" / "helm.log",
            env={"GOBIN": str(tool.bin_dir)},
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kev.cluster.toolchain build``: build and cache everything, printing progress."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in ([], ["build"]):
        print("usage: python -m kev.cluster.toolchain [build]", file=sys.stderr)
        return 2
    toolchain = Toolchain()
    try:
        toolchain.ensure()
    except ToolchainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for tool in toolchain.tools:
        print(tool.bin_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
