"""The test cluster's DNS: ``<service>.<namespace>.svc.cluster.local`` → the Service's ClusterIP.

Pods find Services by name (the chart's ingress URL, a Trigger's subscriber ref resolved by the controller),
and a real cluster runs CoreDNS for that. This is the smallest stand-in: a UDP server answering A queries
for Service names from the apiserver (each name looked up when asked, cached for a second), NXDOMAIN for
every other name (the pods of the test node reach nothing outside the cluster), and no records for other
types (an AAAA query gets an empty answer, so resolvers fall back to IPv4 at once). No headless Services,
pods or SRV records.

``python -m kev.cluster.dns --listen HOST:PORT --kubeconfig PATH`` runs it (the launcher does, for a node).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import ssl
import struct
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["Question", "answer", "parse_question", "service_of"]

_TYPE_A = 1
_CLASS_IN = 1
_NOERROR, _SERVFAIL, _NXDOMAIN, _NOTIMP = 0, 2, 3, 4
_TTL = 5
_CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class Question:
    id: int
    flags: int
    name: str
    qtype: int
    qclass: int
    raw: bytes  # the question section as received, echoed in the answer


def parse_question(packet: bytes) -> Question:
    """The first question of a DNS query; ValueError if the packet is not one."""
    if len(packet) < 12:
        raise ValueError("shorter than a DNS header")
    query_id, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if flags & 0x8000 or qdcount < 1:
        raise ValueError("not a query")
    labels, offset = [], 12
    while True:
        if offset >= len(packet):
            raise ValueError("truncated name")
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0:
            raise ValueError("compressed names are not expected in a question")
        labels.append(packet[offset : offset + length].decode("ascii", errors="replace"))
        offset += length
    if offset + 4 > len(packet):
        raise ValueError("truncated question")
    qtype, qclass = struct.unpack("!HH", packet[offset : offset + 4])
    return Question(query_id, flags, ".".join(labels).lower(), qtype, qclass, packet[12 : offset + 4])


def service_of(name: str, domain: str = "cluster.local") -> tuple[str, str] | None:
    """(namespace, service) for ``<service>.<namespace>.svc.<domain>``, else None."""
    suffix = f".svc.{domain}"
    if not name.endswith(suffix):
        return None
    parts = name[: -len(suffix)].split(".")
    return (parts[1], parts[0]) if len(parts) == 2 and all(parts) else None


def answer(question: Question, address: str | None, *, known: bool) -> bytes:
    """The response: an A record with ``address``, or none (NOERROR if the name exists, else NXDOMAIN)."""
    rcode = _NOERROR if known else _NXDOMAIN
    records = b""
    if address is not None and question.qtype == _TYPE_A and question.qclass == _CLASS_IN:
        # Name: a pointer to the question's name at offset 12.
        records = (
            struct.pack("!HHHIH", 0xC00C, _TYPE_A, _CLASS_IN, _TTL, 4) + ipaddress.IPv4Address(address).packed
        )
    flags = 0x8000 | 0x0400 | (question.flags & 0x0100) | rcode  # QR, AA, RD copied, rcode
    header = struct.pack("!HHHHHH", question.id, flags, 1, 1 if records else 0, 0, 0)
    return header + question.raw + records


def _failure(packet: bytes, rcode: int) -> bytes:
    query_id, flags = struct.unpack("!HH", packet[:4])
    return struct.pack("!HHHHHH", query_id, 0x8000 | (flags & 0x0100) | rcode, 0, 0, 0, 0)


class ServiceLookup:
    """A Service's ClusterIP from the apiserver (None: no such Service, or a headless one)."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        self._server = cluster["server"].rstrip("/")
        self._token = config["users"][0]["user"]["token"]
        self._context = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self._cache: dict[tuple[str, str], tuple[float, str | None]] = {}

    def __call__(self, namespace: str, service: str) -> str | None:
        key = (namespace, service)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < _CACHE_SECONDS:
            return cached[1]
        request = urllib.request.Request(
            f"{self._server}/api/v1/namespaces/{namespace}/services/{service}",
            headers={"Authorization": f"Bearer {self._token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=2, context=self._context) as response:
                cluster_ip = json.load(response).get("spec", {}).get("clusterIP")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            cluster_ip = None
        address = cluster_ip if cluster_ip and cluster_ip != "None" else None
        self._cache[key] = (time.monotonic(), address)
        return address


def serve(sock: socket.socket, lookup: Callable[[str, str], str | None]) -> None:
    while True:
        packet, client = sock.recvfrom(4096)
        try:
            question = parse_question(packet)
        except ValueError:
            if len(packet) >= 4:
                sock.sendto(_failure(packet, _NOTIMP), client)
            continue
        target = service_of(question.name)
        try:
            address = lookup(*target) if target else None
        except (OSError, ValueError) as exc:  # the apiserver is unreachable: say so, the client retries
            print(f"lookup of {question.name} failed: {exc}", file=sys.stderr, flush=True)
            sock.sendto(_failure(packet, _SERVFAIL), client)
            continue
        sock.sendto(answer(question, address, known=address is not None), client)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kev.cluster.dns", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT to answer on (UDP)")
    parser.add_argument("--kubeconfig", required=True, type=Path, help="admin kubeconfig of the cluster")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, int(port)))
    print(f"cluster DNS on {args.listen} (udp)", file=sys.stderr, flush=True)
    try:
        serve(sock, ServiceLookup(args.kubeconfig))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
