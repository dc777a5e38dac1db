"""``kev cluster up|down|status|kubectl|import-image|build``: a local Kubernetes control plane for development and tests.

``up`` builds the binaries on first use and leaves the cluster running in the background (its files under
``--state-dir``, default ``$KEVENTING_CLUSTER_DIR`` or ``.kev/cluster``); its last output line is the
kubeconfig path, so ``export KUBECONFIG=$(kev cluster up | tail -1)`` works. ``up --node`` adds a node that
runs pods, and ``import-image`` puts images on it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from kev.cluster import toolchain
from kev.cluster.launcher import LocalCluster, LocalClusterError
from kev.cluster.toolchain import Toolchain, ToolchainError

__all__ = ["app", "default_state_dir"]

app = typer.Typer(
    name="cluster",
    help="Run a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager), with --node a node.",
    no_args_is_help=True,
)

err_console = Console(stderr=True)

STATE_DIR_ENV = "KEVENTING_CLUSTER_DIR"


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or ".kev/cluster").absolute()


StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help=f"The cluster's PKI, etcd data, logs and kubeconfig [default: ${STATE_DIR_ENV} or .kev/cluster].",
        file_okay=False,
    ),
]


def _cluster(state_dir: Path | None) -> LocalCluster:
    return LocalCluster(state_dir or default_state_dir(), progress=err_console.print)


def _fail(message: str) -> typer.Exit:
    # Text(), not markup: component logs contain "[...]" that rich would take for tags.
    err_console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)
    return typer.Exit(code=1)


@app.command()
def up(
    state_dir: StateDirOption = None,
    controller_manager: Annotated[
        bool,
        typer.Option(
            "--controller-manager/--no-controller-manager",
            help="Run kube-controller-manager (ReplicaSets, garbage collection, ServiceAccounts).",
        ),
    ] = True,
    node: Annotated[
        bool,
        typer.Option(
            "--node",
            help="Add a node that runs pods: kube-scheduler, containerd, kubelet, kube-proxy and a cluster DNS "
            "(root; Debian's containerd, runc, catatonit, iptables, containernetworking-plugins).",
        ),
    ] = False,
) -> None:
    """Start the cluster in the background and print its kubeconfig path (last line)."""
    cluster = LocalCluster(
        state_dir or default_state_dir(),
        controller_manager=controller_manager,
        node=node,
        progress=err_console.print,
    )
    if running := cluster.running():
        err_console.print(
            f"cluster already running from {cluster.state_dir} (pids {sorted(running.values())})"
        )
    else:
        try:
            cluster.start()
        except LocalClusterError as exc:
            raise _fail(str(exc)) from exc
    print(cluster.kubeconfig_path)


@app.command()
def down(state_dir: StateDirOption = None) -> None:
    """Stop the cluster; no process (nor the node's network namespace) is left behind. Its state dir is kept
    (``rm -r`` it to start afresh)."""
    cluster = _cluster(state_dir)
    try:
        cluster.stop()
    except LocalClusterError as exc:
        raise _fail(str(exc)) from exc
    err_console.print(f"cluster in {cluster.state_dir} stopped")


@app.command()
def status(state_dir: StateDirOption = None) -> None:
    """Say which components run; exit code 1 if none does."""
    cluster = _cluster(state_dir)
    running = cluster.running()
    if not running:
        err_console.print(f"no cluster running from {cluster.state_dir}")
        raise typer.Exit(code=1)
    for name, pid in running.items():
        print(f"{name}\t{pid}")
    print(cluster.kubeconfig_path)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def kubectl(
    args: Annotated[list[str] | None, typer.Argument(help="Arguments for kubectl.")] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Run the cached kubectl against the cluster: kev cluster kubectl get ns."""
    cluster = _cluster(state_dir)
    if not cluster.kubeconfig_path.exists():
        raise _fail(f"no cluster in {cluster.state_dir}: run `kev cluster up` first")
    try:
        binary = str(Toolchain().binary("kubectl"))
    except ToolchainError as exc:
        raise _fail(str(exc)) from exc
    sys.stdout.flush()
    # exec, not a child: kubectl gets the terminal, signals and exit code directly.
    os.execve(binary, [binary, *(args or [])], {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path)})


@app.command("import-image")
def import_image(
    archive: Annotated[
        Path,
        typer.Argument(
            help="A `docker save` / `podman save` archive.", exists=True, dir_okay=False, readable=True
        ),
    ],
    state_dir: StateDirOption = None,
) -> None:
    """Import an image into the node's containerd (no registry: pods use it with imagePullPolicy Never)."""
    cluster = _cluster(state_dir)
    if not cluster.running():
        raise _fail(f"no cluster running from {cluster.state_dir}: run `kev cluster up --node` first")
    try:
        cluster.import_image(archive.absolute())
    except LocalClusterError as exc:
        raise _fail(str(exc)) from exc
    err_console.print(f"imported {archive}")


@app.command()
def build() -> None:
    """Build and cache etcd, the Kubernetes binaries and Helm (several minutes the first time)."""
    raise typer.Exit(code=toolchain.main(["build"]))


if __name__ == "__main__":
    app()
