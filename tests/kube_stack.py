"""What the Kubernetes tests share beyond fixtures: a Kubernetes-mode stack of local processes, sending an
event to an address the operator wrote, and what Kafka holds (topics, consumer groups, positions)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from kubectl import Kubectl

from kev.cluster.launcher import LocalCluster
from kev.stack import Stack
from keventing import events
from keventing.kafka.client import admin_client, group_positioned

DATA_PLANE = ("controller", "receiver", "dispatcher")


@contextmanager
def running_stack(
    kafka: str, log_dir: Path, env: Mapping[str, str], services: Sequence[str] = DATA_PLANE
) -> Iterator[Stack]:
    """The operator and the data plane as local processes (as `kev up --kubernetes` runs them), ready."""
    stack = Stack.on_free_ports(
        kafka,
        log_dir,
        "kube",
        extra_env=env,
    )
    stack.start_all(tuple(services))
    try:
        stack.wait_ready(timeout=90)
        yield stack
    finally:
        stack.stop_all()


def send_event(stack: Stack, url: str, event_type: str, event_id: str | None = None) -> str:
    """POST a binary-mode event to ``url`` (an address in a status) at the local receiver; its id (a new one
    unless given)."""
    event_id = event_id or uuid.uuid4().hex
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/kube-test",
        "ce-type": event_type,
        "content-type": "application/json",
    }
    # Addresses are the receiver's public URL; the test reaches the local receiver directly.
    local = url.replace(stack.ingress_url, f"http://127.0.0.1:{stack.receiver_port}")
    response = httpx.post(local, headers=headers, content=b'{"hello":"kubernetes"}', timeout=10)
    assert response.status_code == 202, response.text
    return event_id


def received_ids(sink: Any, path: str, count: int) -> list[str]:
    """The ids of the first ``count`` events the sink received at ``path``."""
    return [events.from_http(r.headers, r.body).id for r in sink.wait_for(path, count, timeout=60)]


def topics(bootstrap: str) -> set[str]:
    async def list_topics() -> set[str]:
        async with admin_client(bootstrap) as admin:
            return set(await admin.list_topics())

    return asyncio.run(list_topics())


def consumer_groups(bootstrap: str) -> set[str]:
    async def list_groups() -> set[str]:
        async with admin_client(bootstrap) as admin:
            return {group[0] for group in await admin.list_consumer_groups()}

    return asyncio.run(list_groups())


def wait_positioned(bootstrap: str, group: str, topic: str, timeout: float = 60.0) -> None:
    """Until ``group`` has committed positions on ``topic`` (a new group starts at the latest record)."""

    async def positioned() -> bool:
        async with admin_client(bootstrap) as admin:
            return await group_positioned(admin, group, topic)

    deadline = time.monotonic() + timeout
    while not asyncio.run(positioned()):
        assert time.monotonic() < deadline, f"consumer group {group} not positioned on {topic}"
        time.sleep(0.3)


@contextmanager
def oidc_namespace(kubectl: Kubectl, prefix: str, accounts: Sequence[str]) -> Iterator[str]:
    """A new namespace with the ServiceAccounts ``accounts``; the cluster's OIDC discovery document and keys
    readable without credentials (the ClusterRoleBinding Kubernetes documents for that), as the receiver's
    verifier reads them."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    binding = f"keventing-test-oidc-discovery-{name}"
    kubectl.run("create", "namespace", name)
    for account in accounts:
        kubectl.run("create", "serviceaccount", account, "-n", name)
    kubectl.run("create", "clusterrolebinding", binding, "--clusterrole=system:service-account-issuer-discovery",
                "--group=system:unauthenticated")  # fmt: skip
    try:
        yield name
    finally:
        kubectl.run("delete", "clusterrolebinding", binding, check=False)
        kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def issuer_env(cluster: LocalCluster) -> dict[str, str]:
    """authentication-oidc with the cluster's service-account issuer as the receiver's issuer."""
    return {
        "KEVENTING_AUTHENTICATION_OIDC": "enabled",
        "KEVENTING_OIDC_ISSUER": cluster.server,
        "KEVENTING_OIDC_ISSUER_CA_FILE": str(cluster.pki.ca_cert),
        # The apiserver's discovery document names its advertised address, not the loopback one.
        "KEVENTING_OIDC_JWKS_URL": f"{cluster.server}/openid/v1/jwks",
    }
