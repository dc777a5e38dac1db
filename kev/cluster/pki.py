"""The test cluster's credentials: a throwaway CA, the apiserver's serving cert, the ServiceAccount key pair,
the admin's static token, and the kubeconfig that carries them.

Made with the ``openssl`` CLI (present wherever Kubernetes tooling is) rather than a Python crypto package
keventing would otherwise not need. Everything is per cluster and lives in its state dir.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ADMIN_USER",
    "ClusterPKI",
    "PKIError",
    "kubeconfig",
    "make_pki",
    "serving_sans",
    "write_kubeconfig",
]

ADMIN_USER = "keventing-admin"
_DAYS = "3650"  # a state dir may be reused for a long time; expiry would only confuse


class PKIError(RuntimeError):
    """openssl is missing or failed."""


@dataclass(frozen=True)
class ClusterPKI:
    """Paths of one cluster's credentials (all inside ``directory``)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    @property
    def token_file(self) -> Path:
        return self.directory / "tokens.csv"

    @property
    def admin_token(self) -> str:
        return self.token_file.read_text().split(",", 1)[0]


def serving_sans(service_ip: str, host_ips: Sequence[str] = ()) -> list[str]:
    """Names the apiserver answers to: loopback for us, the in-cluster names and ClusterIP for pods, and
    ``host_ips`` (the address a node reaches it on)."""
    names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    names.append("kubernetes.default.svc.cluster.local")
    ips = ["127.0.0.1", service_ip, *host_ips]
    return [f"DNS:{name}" for name in names] + [f"IP:{ip}" for ip in ips]


def kubeconfig(*, server: str, ca_cert: Path, token: str, name: str = "keventing-test") -> dict[str, Any]:
    """A kubeconfig document for the admin user (static token, our CA)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca_cert)}}],
        "users": [{"name": ADMIN_USER, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": ADMIN_USER}}],
        "current-context": name,
    }


def _openssl(args: Sequence[str], cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise PKIError("the test cluster's certificates are made with `openssl`, which is not on PATH")
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise PKIError(f"`openssl {' '.join(args)}` failed: {done.stderr.strip()}")


def make_pki(directory: Path, *, service_ip: str, host_ips: Sequence[str] = ()) -> ClusterPKI:
    """Create the cluster's credentials in ``directory`` unless they exist already (restarts keep them)."""
    pki = ClusterPKI(directory)
    if pki.token_file.exists():
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    rsa = ["-newkey", "rsa:2048", "-nodes"]
    _openssl(
        [
            "req",
            "-x509",
            *rsa,
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            _DAYS,
            "-subj",
            "/CN=keventing-test-ca",
        ],
        directory,
    )
    _openssl(
        ["req", *rsa, "-keyout", "apiserver.key", "-out", "apiserver.csr", "-subj", "/CN=kube-apiserver"],
        directory,
    )
    (directory / "apiserver.ext").write_text(
        f"subjectAltName={','.join(serving_sans(service_ip, host_ips))}\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        [
            "x509",
            "-req",
            "-in",
            "apiserver.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "apiserver.crt",
            "-days",
            _DAYS,
            "-extfile",
            "apiserver.ext",
        ],
        directory,
    )
    _openssl(["genrsa", "-out", "sa.key", "2048"], directory)
    _openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], directory)
    # Written last: its presence means the set is complete. system:masters bypasses RBAC.
    pki.token_file.write_text(f'{secrets.token_hex(24)},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
    pki.token_file.chmod(0o600)
    return pki


def write_kubeconfig(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)
    return path
