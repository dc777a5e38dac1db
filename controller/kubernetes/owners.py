"""What the controller makes at run time and the release must take with it: owned by the chart's ClusterRole.

``helm uninstall`` deletes what the chart rendered; what a controller replica creates itself (the webhook
registrations and their certificate Secret, the leader Lease) is not in the release. Each gets an owner
reference to the chart's controller ClusterRole (``KEVENTING_WEBHOOK_OWNER``), which goes with the release,
so the garbage collector deletes them after it. A cluster-scoped object can only be owned by a
cluster-scoped one; a namespaced one (the Secret, the Lease) may be too.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes_asyncio import client as k8s

log = logging.getLogger("keventing.controller.owners")


async def read_owner_references(api: k8s.ApiClient, cluster_role: str) -> list[dict[str, Any]]:
    """The owner reference to ``cluster_role`` (empty when none is named); the API server's refusal (404: it is
    gone, the release being uninstalled) raised as it came."""
    if not cluster_role:
        return []
    role = await k8s.RbacAuthorizationV1Api(api).read_cluster_role(cluster_role)
    reference = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}
    return [{**reference, "name": cluster_role, "uid": role.metadata.uid}]


async def owner_references(api: k8s.ApiClient, cluster_role: str) -> list[dict[str, Any]] | None:
    """The owner reference to ``cluster_role`` (empty when none is named; None, logged, when it is missing
    or not readable)."""
    try:
        return await read_owner_references(api, cluster_role)
    except k8s.ApiException as err:
        log.warning(
            "cannot read the ClusterRole that owns what the controller makes",
            extra={"cluster_role": cluster_role, "status": err.status, "reason": err.reason},
        )
        return None


def as_models(owners: list[dict[str, Any]]) -> list[k8s.V1OwnerReference]:
    """``owners`` as the client's models, for an object built from them (a V1Lease, a V1Secret)."""
    return [
        k8s.V1OwnerReference(api_version=o["apiVersion"], kind=o["kind"], name=o["name"], uid=o["uid"])
        for o in owners
    ]
