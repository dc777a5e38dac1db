"""The test cluster's one node: containerd, the kubelet and kube-proxy in a network namespace (root only).

What it takes on a machine without a container engine, a registry or a dummy network module
(../shared/notes: "A node that runs pods"):

- **Network**: the network namespace ``keventing-node`` joined to the host by a veth pair. The host side,
  :data:`HOST_IP`, is where the node reaches the apiserver and the cluster DNS; the node side, :data:`NODE_IP`,
  is the node's InternalIP. Pods are on a CNI bridge (Debian's ``bridge`` and ``host-local`` plugins) in
  :data:`POD_CIDR`; the host routes the pod and Service ranges through the node, so a ClusterIP answers
  from the host too. kube-proxy (iptables mode) writes its rules inside the namespace only.
- **Mounts**: containerd and the kubelet share one private mount namespace (held by a tiny process), in
  which the three kernel settings the kubelet insists on rewriting are files of ours bind-mounted over
  /proc/sys; every pod volume and container rootfs is mounted there too, so nothing reaches the host's
  mount table and everything vanishes with the namespace.
- **Images**: no registry, so the sandbox ("pause") image is built here from Debian's static ``catatonit``,
  and other images are imported (``ctr images import`` of a ``podman save`` archive); pods that use them
  need ``imagePullPolicy: Never`` (or ``IfNotPresent``).

:class:`~kev.cluster.launcher.LocalCluster` (``node=True``) starts and stops these; this module holds the
configuration it writes and the host-side steps (namespace, routes, cleanup of pods' processes).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

__all__ = [
    "CLUSTER_DOMAIN",
    "HOST_IP",
    "NETNS",
    "NODE_IP",
    "NODE_NAME",
    "PAUSE_IMAGE",
    "POD_CIDR",
    "NodeError",
    "NodeLayout",
    "kill_pod_processes",
    "missing_node_programs",
    "network_down",
    "network_up",
    "pause_image_archive",
]

NODE_NAME = "keventing-node"
NETNS = "keventing-node"
HOST_VETH = "kev-host"
NODE_VETH = "kev-node"
HOST_IP = "10.200.0.1"
NODE_IP = "10.200.0.2"
POD_CIDR = "10.244.0.0/24"
CLUSTER_DOMAIN = "cluster.local"
#: containerd runs its pod sandboxes from this image; it is built here, never pulled.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
#: Values the kubelet wants (it writes them at start and fails if it cannot); the host keeps its own.
KUBELET_SYSCTLS = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}
#: Debian packages providing what the node runs besides the Kubernetes binaries.
NODE_PROGRAMS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "catatonit": "catatonit",
    "iptables": "iptables",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
}


class NodeError(RuntimeError):
    """The node could not be set up or torn down; the message says which step and why."""


def missing_node_programs() -> list[str]:
    """What is missing to run a node, as "program (Debian package)" strings; empty when all is there."""
    missing = [f"{name} ({package})" for name, package in NODE_PROGRAMS.items() if shutil.which(name) is None]
    if cni_bin_dir() is None:
        missing.append("the CNI plugins bridge and host-local (containernetworking-plugins)")
    return missing


def cni_bin_dir() -> str | None:
    for directory in CNI_BIN_DIRS:
        if all((Path(directory) / plugin).exists() for plugin in ("bridge", "host-local", "loopback")):
            return directory
    return None


def _run(argv: Sequence[str], what: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NodeError(f"{what}: `{' '.join(argv)}` failed: {done.stderr.strip() or done.stdout.strip()}")


def _in_node(*argv: str) -> list[str]:
    # nsenter, not `ip netns exec`: that one remounts /sys and would hide the cgroup mounts from the kubelet.
    return ["nsenter", f"--net=/run/netns/{NETNS}", *argv]


#: Names the state dir of the cluster whose node has the network namespace, so that a leftover of a cluster
#: that died without `kev cluster down` can be recognised and cleared.
OWNER_FILE = Path("/run/keventing-node.owner")


def network_owner() -> Path | None:
    """The state dir of the cluster that made the node's network namespace, if it exists."""
    if not Path(f"/run/netns/{NETNS}").exists():
        return None
    try:
        return Path(OWNER_FILE.read_text().strip())
    except OSError:
        return Path("(unknown: no owner file)")


def network_up(owner: Path) -> None:
    """Create the node's network namespace, the veth pair and the routes (see the module docstring)."""
    if (other := network_owner()) is not None:
        raise NodeError(
            f"the network namespace {NETNS} exists: the node of the cluster in {other} runs on this machine "
            f"(`kev cluster down --state-dir {other}` it, or `ip netns del {NETNS}` if it is a leftover)"
        )
    OWNER_FILE.write_text(f"{owner}\n")
    steps = [
        (["ip", "netns", "add", NETNS], "creating the node's network namespace"),
        (
            ["ip", "link", "add", HOST_VETH, "type", "veth", "peer", "name", NODE_VETH, "netns", NETNS],
            "creating the node's veth pair",
        ),
        (["ip", "addr", "add", f"{HOST_IP}/24", "dev", HOST_VETH], "addressing the host's end"),
        (["ip", "link", "set", HOST_VETH, "up"], "bringing the host's end up"),
        (_in_node("ip", "addr", "add", f"{NODE_IP}/24", "dev", NODE_VETH), "addressing the node"),
        (_in_node("ip", "link", "set", NODE_VETH, "up"), "bringing the node's end up"),
        (_in_node("ip", "link", "set", "lo", "up"), "bringing the node's loopback up"),
        (_in_node("ip", "route", "add", "default", "via", HOST_IP), "routing the node through the host"),
        (_in_node("sysctl", "-qw", "net.ipv4.ip_forward=1"), "letting the node forward pod traffic"),
        (["ip", "route", "add", POD_CIDR, "via", NODE_IP], "routing the pod network through the node"),
    ]
    try:
        for argv, what in steps:
            _run(argv, what)
    except NodeError:
        network_down()
        raise


def service_route_up(service_cidr: str) -> None:
    """Route the Service range through the node, where kube-proxy's rules translate ClusterIPs."""
    _run(["ip", "route", "add", service_cidr, "via", NODE_IP], "routing the Service range through the node")


def network_down() -> None:
    """Delete the namespace (which deletes the veth pair and so the host's routes through it); idempotent."""
    if Path(f"/run/netns/{NETNS}").exists():
        _run(["ip", "netns", "del", NETNS], "deleting the node's network namespace")
    OWNER_FILE.unlink(missing_ok=True)
    # If the namespace was deleted by hand, the host's end may still exist (deleting the namespace deletes it
    # too, a moment later: hence no error when it is already gone).
    subprocess.run(["ip", "link", "del", HOST_VETH], capture_output=True, check=False)


def mount_namespace_holder(python: str, marker: Path) -> list[str]:
    """argv of the process that holds the node's private mount namespace (in the node's network namespace).

    ``marker`` is only there so that the process's command line names the cluster's state dir.
    """
    return _in_node(
        "unshare",
        "--mount",
        "--propagation",
        "private",
        python,
        "-c",
        "import signal; signal.pause()",
        str(marker),
    )


def bind_kubelet_sysctls(holder_pid: int, directory: Path) -> None:
    """Bind files holding :data:`KUBELET_SYSCTLS` over /proc/sys inside the holder's mount namespace."""
    if not in_own_mount_namespace(holder_pid):
        # Never in the host's: its /proc/sys would show (and the kubelet would write) our files.
        raise NodeError(f"process {holder_pid} is not in a mount namespace of its own yet")
    directory.mkdir(parents=True, exist_ok=True)
    for key, value in KUBELET_SYSCTLS.items():
        source = directory / key.replace("/", ".")
        source.write_text(f"{value}\n")
        _run(
            [
                "nsenter",
                f"--mount=/proc/{holder_pid}/ns/mnt",
                "mount",
                "--bind",
                str(source),
                f"/proc/sys/{key}",
            ],
            f"binding {source} over /proc/sys/{key} for the kubelet",
        )


def in_own_mount_namespace(pid: int) -> bool:
    """Whether ``pid`` has left this process's mount namespace."""
    theirs, ours = _namespace(pid, "mnt"), _namespace(os.getpid(), "mnt")
    return theirs is not None and theirs != ours


def in_node_namespaces(holder_pid: int, argv: Sequence[str]) -> list[str]:
    """argv run inside the holder's mount namespace and the node's network namespace."""
    return ["nsenter", f"--mount=/proc/{holder_pid}/ns/mnt", f"--net=/run/netns/{NETNS}", *argv]


def in_node_network(argv: Sequence[str]) -> list[str]:
    return _in_node(*argv)


# --------------------------------------------------------------------------------------------------------
# Configuration files
# --------------------------------------------------------------------------------------------------------


class NodeLayout:
    """Where the node's files live inside the cluster's state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.home = state_dir / "node"

    @property
    def containerd_config(self) -> Path:
        return self.home / "containerd.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.home / "containerd" / "containerd.sock"

    @property
    def kubelet_config(self) -> Path:
        return self.home / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.home / "kube-proxy.yaml"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig with the apiserver's address as seen from the node (:data:`HOST_IP`)."""
        return self.home / "kubeconfig"

    @property
    def cni_conf_dir(self) -> Path:
        return self.home / "cni" / "net.d"

    @property
    def pod_logs(self) -> Path:
        return self.home / "pod-logs"

    @property
    def sysctls(self) -> Path:
        return self.home / "sysctl"

    @property
    def resolv_conf(self) -> Path:
        return self.home / "resolv.conf"

    def write(self, *, dns_ip: str) -> None:
        """Write every configuration file the node's processes read."""
        for directory in (self.home, self.cni_conf_dir, self.pod_logs, self.containerd_socket.parent):
            directory.mkdir(parents=True, exist_ok=True)
        self.containerd_config.write_text(
            containerd_config(self.home, self.containerd_socket, self.cni_conf_dir)
        )
        self.kubelet_config.write_text(
            yaml.safe_dump(kubelet_config(self.containerd_socket, self.pod_logs, self.resolv_conf, dns_ip))
        )
        self.kube_proxy_config.write_text(yaml.safe_dump(kube_proxy_config(self.kubeconfig)))
        (self.cni_conf_dir / "10-keventing.conflist").write_text(
            json.dumps(cni_config(self.home / "cni" / "ipam"), indent=2) + "\n"
        )
        # Pods with dnsPolicy Default get this: the cluster DNS too (the host's resolver is not reachable).
        self.resolv_conf.write_text(f"nameserver {dns_ip}\n")


def containerd_config(home: Path, socket: Path, cni_conf_dir: Path) -> str:
    """containerd 1.6's config (version 2): its own root, state and socket; CRI with runc on cgroupfs."""
    return f"""version = 2
root = "{home / "containerd" / "root"}"
state = "{home / "containerd" / "state"}"

[grpc]
  address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # The sandbox lacks CAP_SYS_RESOURCE: never lower a process's OOM score below containerd's own.
  restrict_oom_score_adj = true
  enable_selinux = false
  # Pods' network namespaces under containerd's state dir, not /run/netns: they go with the node.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir() or CNI_BIN_DIRS[0]}"
    conf_dir = "{cni_conf_dir}"
"""


def kubelet_config(socket: Path, pod_logs: Path, resolv_conf: Path, dns_ip: str) -> dict[str, object]:
    """The KubeletConfiguration: cgroupfs, anonymous read access on the node IP (for logs and exec)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": f"unix://{socket}",
        "cgroupDriver": "cgroupfs",
        # This machine has cgroup v1, which the kubelet refuses since 1.31 unless told otherwise.
        "failCgroupV1": False,
        "failSwapOn": False,
        "address": NODE_IP,
        "readOnlyPort": 0,
        # Only the host can reach the node's network: the apiserver (logs, exec) may call it unauthenticated.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [dns_ip],
        "resolvConf": str(resolv_conf),
        "podLogsDir": str(pod_logs),
        # A test node must not evict its pods because the machine's disk is fuller than a production node's.
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "syncFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "registerNode": True,
        "makeIPTablesUtilChains": True,
    }


def kube_proxy_config(kubeconfig: Path) -> dict[str, object]:
    """kube-proxy in iptables mode, masquerading all Service traffic: pods reach Services on their own
    bridge (the reply must come back through the node to be un-NATed) and the host reaches ClusterIPs."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_CIDR,
        "iptables": {"masqueradeAll": True},
        # 0: leave the host's conntrack settings alone (they are not the node's to tune).
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
    }


def cni_config(ipam_dir: Path) -> dict[str, object]:
    """The pod network: one bridge, addresses from :data:`POD_CIDR`, pod traffic leaving it masqueraded."""
    return {
        "cniVersion": "0.4.0",
        "name": "keventing",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "kev-cni0",
                "isGateway": True,
                "ipMasq": True,
                # A pod that calls its own Service comes back through the bridge port it left by.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


# --------------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------------


def _tar_bytes(files: Iterable[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pause_image_archive(catatonit: Path, destination: Path, tag: str = PAUSE_IMAGE) -> Path:
    """A ``docker save``-style archive of a FROM-scratch image whose entrypoint is ``catatonit -P``
    (pause mode: it sleeps and reaps, which is all a pod sandbox does)."""
    layer = _tar_bytes([("pause", catatonit.read_bytes(), 0o755)])
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause", "-P"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        }
    ).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [tag], "Layers": [f"{layer_digest}/layer.tar"]}]
    )
    destination.write_bytes(
        _tar_bytes(
            [
                (f"{layer_digest}/layer.tar", layer, 0o644),
                (config_name, config, 0o644),
                ("manifest.json", manifest.encode(), 0o644),
            ]
        )
    )
    return destination


def import_image(socket: Path, archive: Path) -> None:
    """Import a ``docker save`` / ``podman save`` archive into containerd's Kubernetes namespace."""
    _run(
        [
            "ctr",
            "--address",
            str(socket),
            "--namespace",
            "k8s.io",
            "images",
            "import",
            "--no-unpack",
            str(archive),
        ],
        f"importing {archive} into the node's containerd",
    )


# --------------------------------------------------------------------------------------------------------
# Cleanup
# --------------------------------------------------------------------------------------------------------


def _namespace(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the parent pid follows the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def kill_pod_processes(namespace_pids: Iterable[int]) -> int:
    """SIGKILL every process in the mount namespaces of ``namespace_pids`` but those pids themselves
    (containerd's shims: they re-parent themselves away from containerd) and all their descendants (the
    containers). Returns how many were killed."""
    keep = set(namespace_pids)
    namespaces = {ns for pid in keep if (ns := _namespace(pid, "mnt")) is not None}
    if not namespaces:
        return 0
    pids = _all_pids()
    parents = {pid: _parent(pid) for pid in pids}
    doomed = {pid for pid in pids if pid not in keep and _namespace(pid, "mnt") in namespaces}
    # Descendants: keep adding children of doomed processes until nothing changes.
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in doomed and pid not in doomed | keep}
        grew = bool(children)
        doomed |= children
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(doomed)


def remove_pod_cgroups() -> None:
    """Remove the (empty, once the pods are gone) cgroups the kubelet made, deepest first."""
    root = Path("/sys/fs/cgroup")
    for controller in root.iterdir() if root.exists() else []:
        top = controller / "kubepods"
        if not top.is_dir():
            continue
        for directory, _, _ in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
