"""Run a real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

:class:`LocalCluster` is to Kubernetes what :class:`~kev.kafka.embedded.EmbeddedKafka` is to Kafka:
binaries from the cached :class:`~kev.cluster.toolchain.Toolchain`, free ports, a scratch state dir holding
the PKI, the etcd data, one log per component, a kubeconfig and ``cluster.json`` (ports and pids). Each
component runs in its own session, so a cluster outlives the process that started it (``kev cluster up``)
and another process can stop it from the state dir alone (``kev cluster down``). Without a node,
Deployments get ReplicaSets and Pods, but the Pods stay Pending; ``node=True`` (root only) adds
kube-scheduler, a one-node data plane (containerd, kubelet, kube-proxy: :mod:`kev.cluster.node`) and a
cluster DNS for Service names (:mod:`kev.cluster.dns`), so pods run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kev.cluster import node as node_setup
from kev.cluster.node import HOST_IP, NODE_IP, NODE_NAME, NodeError, NodeLayout
from kev.cluster.pki import ClusterPKI, PKIError, kubeconfig, make_pki, write_kubeconfig
from kev.cluster.toolchain import Toolchain, ToolchainError

# The embedded Kafka's process helpers serve here unchanged (pid liveness without zombies, argv from procfs).
from kev.kafka.embedded import _cmdline, _pid_alive, free_port, tail

__all__ = ["ClusterState", "LocalCluster", "LocalClusterError"]

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # the first address of SERVICE_CIDR is the `kubernetes` Service's ClusterIP
_HOST = "127.0.0.1"
_STATE_FILE = "cluster.json"
_STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
#: The node's processes whose mount namespace the pods' shims share.
_NODE_NAMESPACE_HOLDERS = ("node-namespaces", "containerd")

Progress = Callable[[str], None]


class LocalClusterError(RuntimeError):
    """The test cluster could not be built, started or stopped; the message says which component and why."""


@dataclass
class ClusterState:
    """What ``cluster.json`` records: enough for another process to use or stop the cluster."""

    apiserver_port: int
    etcd_port: int
    kubeconfig: str
    pids: dict[str, int] = field(default_factory=dict)
    #: Whether the cluster has its node (then the network namespace must go with it).
    node: bool = False

    @property
    def server(self) -> str:
        return f"https://{_HOST}:{self.apiserver_port}"


class LocalCluster:
    """A control plane whose every file lives in ``state_dir`` (a fresh temp dir if not given)."""

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        toolchain: Toolchain | None = None,
        controller_manager: bool = True,
        node: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="keventing-cluster-")).absolute()
        self.toolchain = toolchain or Toolchain()
        # A node needs ReplicaSets and ServiceAccounts, so it implies the controller manager.
        self.controller_manager = controller_manager or node
        self.node = node
        self.layout = NodeLayout(self.state_dir)
        self._progress = progress
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def __repr__(self) -> str:
        return f"LocalCluster(state_dir={str(self.state_dir)!r})"

    # ---- paths and state --------------------------------------------------------------------------------

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def pki(self) -> ClusterPKI:
        return ClusterPKI(self.state_dir / "pki")

    def log_file(self, component: str) -> Path:
        return self.state_dir / "logs" / f"{component}.log"

    def state(self) -> ClusterState | None:
        try:
            return ClusterState(**json.loads((self.state_dir / _STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _save(self, state: ClusterState) -> None:
        path = self.state_dir / _STATE_FILE
        path.write_text(json.dumps(asdict(state), indent=2) + "\n")

    def _ours(self, pid: int) -> bool:
        """A pid from cluster.json is ours only if it still runs with our state dir on its command line."""
        return _pid_alive(pid) and str(self.state_dir) in " ".join(_cmdline(pid) or [])

    def running(self) -> dict[str, int]:
        """The components that still run, by name."""
        state = self.state()
        return {name: pid for name, pid in (state.pids if state else {}).items() if self._ours(pid)}

    @property
    def server(self) -> str:
        state = self.state()
        if state is None:
            raise LocalClusterError(f"no cluster was started from {self.state_dir}")
        return state.server

    def _say(self, message: str) -> None:
        if self._progress is not None:
            self._progress(message)

    # ---- lifecycle --------------------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> ClusterState:
        """Build the binaries if needed, start every component and wait until the apiserver is ready.

        ``timeout`` bounds the startup, not the one-off build. On failure nothing is left running.
        """
        if self.running():
            raise LocalClusterError(f"a cluster already runs from {self.state_dir}: stop it first")
        if self.node:
            self._check_node_prerequisites()
        try:
            binaries = {name: self.toolchain.binary(name) for name in self._components()}
            binaries["kubectl"] = self.toolchain.binary("kubectl")
            if self.node:
                for name in ("kubelet", "kube-proxy"):
                    binaries[name] = self.toolchain.binary(name)
        except ToolchainError as exc:
            raise LocalClusterError(f"the cluster's binaries are not available: {exc}") from exc
        started = time.monotonic()
        deadline = started + timeout
        try:
            pki = make_pki(self.pki.directory, service_ip=SERVICE_IP, host_ips=[HOST_IP])
        except PKIError as exc:
            raise LocalClusterError(str(exc)) from exc
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        state = ClusterState(
            apiserver_port=free_port(),
            etcd_port=free_port(),
            kubeconfig=str(self.kubeconfig_path),
            node=self.node,
        )
        write_kubeconfig(
            self.kubeconfig_path, kubeconfig(server=state.server, ca_cert=pki.ca_cert, token=pki.admin_token)
        )
        self._save(state)
        try:
            if self.node:
                self._clear_stale_node()
                self._say("setting up the node's network namespace…")
                node_setup.network_up(self.state_dir)
                node_setup.service_route_up(SERVICE_CIDR)
            self._launch("etcd", [str(binaries["etcd"]), *self._etcd_args(state)], state)
            self._wait("etcd", deadline, lambda: self._http_ok(f"http://{_HOST}:{state.etcd_port}/health"))
            self._launch(
                "kube-apiserver", [str(binaries["kube-apiserver"]), *self._apiserver_args(state)], state
            )
            self._wait("kube-apiserver", deadline, lambda: self._http_ok(f"{state.server}/readyz", pki))
            if self.controller_manager:
                kcm = [str(binaries["kube-controller-manager"]), *self._controller_manager_args()]
                self._launch("kube-controller-manager", kcm, state)
                # The serviceaccount controller's first act proves the controller manager is working.
                self._wait(
                    "kube-controller-manager",
                    deadline,
                    lambda: self._http_ok(
                        f"{state.server}/api/v1/namespaces/default/serviceaccounts/default", pki
                    ),
                )
            if self.node:
                self._start_node(state, binaries, deadline)
        except BaseException:
            self.stop()
            raise
        self._say(f"cluster ready in {time.monotonic() - started:.1f} s at {state.server}")
        return state

    def import_image(self, archive: Path) -> None:
        """Import a ``docker save`` / ``podman save`` archive into the node's containerd (there is no
        registry: pods use it with ``imagePullPolicy: Never`` or ``IfNotPresent``)."""
        if not (self.state() or ClusterState(0, 0, "")).node:
            raise LocalClusterError(f"the cluster in {self.state_dir} has no node to import images into")
        try:
            node_setup.import_image(self.layout.containerd_socket, archive)
        except NodeError as exc:
            raise LocalClusterError(str(exc)) from exc

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL after a grace period); idempotent."""
        state = self.state()
        pids = dict(state.pids) if state else {}
        for name, child in self._procs.items():
            pids.setdefault(name, child.pid)
        # Reverse start order: clients before the apiserver, the apiserver before its storage.
        for name in reversed(list(pids)):
            pid = pids[name]
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is not None:
                continue
            if proc is None and not self._ours(pid):
                continue
            if name == "containerd":
                # The kubelet is gone, so nothing restarts the pods: kill their shims and containers,
                # which left containerd's process group but not its mount namespace.
                alive = [p for n, p in pids.items() if n in _NODE_NAMESPACE_HOLDERS and self._ours(p)]
                node_setup.kill_pod_processes(alive)
            self._terminate(pid, proc)
        self._procs.clear()
        if state is not None and state.node:
            try:
                node_setup.network_down()
            except NodeError as exc:
                raise LocalClusterError(str(exc)) from exc
            node_setup.remove_pod_cgroups()
        if state is not None:
            state.pids = {}
            self._save(state)

    def stop_apiserver(self) -> None:
        """Stop only the kube-apiserver (etcd keeps the data), as an outage or an upgrade does."""
        state = self.state()
        pid = state.pids.get("kube-apiserver") if state else None
        if state is None or pid is None:
            raise LocalClusterError(f"no kube-apiserver runs from {self.state_dir}")
        self._terminate(pid, self._procs.pop("kube-apiserver", None))
        del state.pids["kube-apiserver"]
        self._save(state)

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """Start the kube-apiserver again, on the same port, after :meth:`stop_apiserver`."""
        state = self.state()
        if state is None:
            raise LocalClusterError(f"no cluster was started from {self.state_dir}")
        argv = [str(self.toolchain.binary("kube-apiserver")), *self._apiserver_args(state)]
        self._launch("kube-apiserver", argv, state)
        # Keep the start order in cluster.json: stop() stops in reverse, clients before the apiserver.
        state.pids = {name: state.pids[name] for name in self._components() if name in state.pids}
        self._save(state)
        server, pki = state.server, self.pki
        self._wait(
            "kube-apiserver", time.monotonic() + timeout, lambda: self._http_ok(f"{server}/readyz", pki)
        )

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- internals --------------------------------------------------------------------------------------

    def _components(self) -> list[str]:
        names = ["etcd", "kube-apiserver"]
        if self.controller_manager:
            names.append("kube-controller-manager")
        if self.node:
            names.append("kube-scheduler")
        return names

    def _check_node_prerequisites(self) -> None:
        if os.geteuid() != 0:
            raise LocalClusterError("a cluster with a node needs root (network namespaces, mounts, iptables)")
        if missing := node_setup.missing_node_programs():
            raise LocalClusterError(
                f"a node needs {', '.join(missing)}: apt-get install containerd runc catatonit iptables "
                "containernetworking-plugins"
            )
        catatonit = Path("/usr/bin/catatonit")
        if not catatonit.exists():
            raise LocalClusterError(
                "the pause image is built from Debian's static /usr/bin/catatonit: install it"
            )

    def _clear_stale_node(self) -> None:
        """Stop what is left of a node whose cluster died without `kev cluster down` (its processes are
        gone, its network namespace is not); a node that still runs is left alone (network_up says so)."""
        owner = node_setup.network_owner()
        if owner is None or not (owner / _STATE_FILE).exists():
            return
        stale = LocalCluster(owner, toolchain=self.toolchain)
        if not stale.running():
            self._say(f"clearing the node a dead cluster in {owner} left behind…")
            stale.stop()

    def _start_node(self, state: ClusterState, binaries: dict[str, Path], deadline: float) -> None:
        """kube-scheduler and the cluster DNS on the host; containerd, kubelet, kube-proxy in the node."""
        pki, layout = self.pki, self.layout
        node_server = f"https://{HOST_IP}:{state.apiserver_port}"
        layout.write(dns_ip=HOST_IP)
        write_kubeconfig(
            layout.kubeconfig, kubeconfig(server=node_server, ca_cert=pki.ca_cert, token=pki.admin_token)
        )
        config = str(self.kubeconfig_path)
        self._launch(
            "kube-scheduler",
            [
                str(binaries["kube-scheduler"]),
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                f"--bind-address={_HOST}",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--profiling=false",
            ],
            state,
        )
        self._launch(
            "cluster-dns",
            [sys.executable, "-m", "kev.cluster.dns", f"--listen={HOST_IP}:53", f"--kubeconfig={config}"],
            state,
        )
        holder_argv = node_setup.mount_namespace_holder(sys.executable, layout.home)
        self._launch("node-namespaces", holder_argv, state)
        holder = state.pids["node-namespaces"]
        # unshare has made the namespace once the holder runs python (until then it is unshare's own).
        self._wait("node-namespaces", deadline, lambda: self._mount_namespace_made(holder))
        try:
            node_setup.bind_kubelet_sysctls(holder, layout.sysctls)
        except NodeError as exc:
            raise LocalClusterError(str(exc)) from exc
        containerd = ["containerd", "--config", str(layout.containerd_config)]
        self._launch("containerd", node_setup.in_node_namespaces(holder, containerd), state)
        self._wait("containerd", deadline, lambda: layout.containerd_socket.exists())
        archive = node_setup.pause_image_archive(Path("/usr/bin/catatonit"), layout.home / "pause.tar")
        try:
            node_setup.import_image(layout.containerd_socket, archive)
        except NodeError as exc:
            raise LocalClusterError(str(exc)) from exc
        kubelet = [
            str(binaries["kubelet"]),
            f"--config={layout.kubelet_config}",
            f"--kubeconfig={layout.kubeconfig}",
            f"--root-dir={layout.home / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ]
        self._launch("kubelet", node_setup.in_node_namespaces(holder, kubelet), state)
        proxy = [str(binaries["kube-proxy"]), f"--config={layout.kube_proxy_config}", "--v=1"]
        self._launch("kube-proxy", node_setup.in_node_network(proxy), state)
        self._wait("kubelet", deadline, lambda: self._node_ready(state))

    @staticmethod
    def _mount_namespace_made(pid: int) -> bool:
        # nsenter execs unshare, which makes the namespace private and then execs python: only then is the
        # process's own program (argv[0], not merely an argument) python.
        argv = _cmdline(pid) or []
        return bool(argv) and argv[0] == sys.executable and node_setup.in_own_mount_namespace(pid)

    def _node_ready(self, state: ClusterState) -> bool:
        request = urllib.request.Request(f"{state.server}/api/v1/nodes/{NODE_NAME}")
        request.add_header("Authorization", f"Bearer {self.pki.admin_token}")
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                conditions = json.load(response).get("status", {}).get("conditions", [])
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _etcd_args(self, state: ClusterState) -> list[str]:
        client = f"http://{_HOST}:{state.etcd_port}"
        peer = f"http://{_HOST}:{free_port()}"
        return [
            "--name=default",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--log-level=warn",
            # Test data is disposable: skipping fsync makes every write (and so every test) faster.
            "--unsafe-no-fsync",
        ]

    def _apiserver_args(self, state: ClusterState) -> list[str]:
        pki = self.pki
        # With a node, the apiserver must be reachable from the node's network namespace too (HOST_IP), and
        # the `kubernetes` Service points there.
        bind = (
            ["--bind-address=0.0.0.0", f"--advertise-address={HOST_IP}"]
            if state.node
            else [f"--bind-address={_HOST}"]
        )
        return [
            f"--etcd-servers=http://{_HOST}:{state.etcd_port}",
            *bind,
            "--kubelet-preferred-address-types=InternalIP",
            f"--secure-port={state.apiserver_port}",
            f"--cert-dir={pki.directory}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--token-auth-file={pki.token_file}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-account-issuer={state.server}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--profiling=false",
        ]

    def _controller_manager_args(self) -> list[str]:
        pki, config = self.pki, str(self.kubeconfig_path)
        return [
            f"--kubeconfig={config}",
            # Its own delegated authn/authz against the apiserver, else it logs warnings on every start.
            f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}",
            # There is no front proxy, so there is no request-header CA to look up (it only logs errors).
            "--authentication-skip-lookup=true",
            f"--bind-address={_HOST}",
            f"--secure-port={free_port()}",
            f"--cert-dir={self.state_dir / 'controller-manager'}",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _launch(self, name: str, argv: Sequence[str], state: ClusterState) -> None:
        self._say(f"starting {name}…")
        with self.log_file(name).open("ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._procs[name] = proc
        state.pids[name] = proc.pid
        self._save(state)  # at once: a `down` from elsewhere must find even a half-started cluster

    def _wait(self, name: str, deadline: float, ready: Callable[[], bool]) -> None:
        proc = self._procs[name]
        while not ready():
            if proc.poll() is not None:
                raise self._failure(name, f"exited with code {proc.returncode} while starting")
            if time.monotonic() > deadline:
                raise self._failure(name, "did not become ready in time")
            time.sleep(0.25)

    def _failure(self, name: str, what: str) -> LocalClusterError:
        log = self.log_file(name)
        return LocalClusterError(f"{name} {what}; last lines of {log}:\n{tail(log, 25)}")

    def _http_ok(self, url: str, pki: ClusterPKI | None = None) -> bool:
        request = urllib.request.Request(url)
        context = None
        if pki is not None:
            # Anonymous requests get 401 on /readyz: probe as the admin, verifying our own CA.
            request.add_header("Authorization", f"Bearer {pki.admin_token}")
            context = ssl.create_default_context(cafile=str(pki.ca_cert))
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _terminate(self, pid: int, proc: subprocess.Popen[bytes] | None) -> None:
        # Each component leads its own process group: signal the group so no helper child survives.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        if not self._exited(pid, proc, _STOP_GRACE):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if not self._exited(pid, proc, _STOP_GRACE):
                raise LocalClusterError(f"process {pid} survived SIGKILL")

    @staticmethod
    def _exited(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True
