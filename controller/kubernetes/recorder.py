"""Kubernetes Events for failures, as Knative's reconcilers record them: when an object stops being Ready (or
fails for a new reason), a Warning Event on it says why, so ``kubectl describe`` and ``kubectl get events``
show it. Transitions only: an object that stays not Ready for the same reason gets no further Events."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from kubernetes_asyncio import client as k8s

from controller.kubernetes.kinds import by_kind
from keventing.resources import Condition, ResourceKey

log = logging.getLogger("keventing.controller.kubernetes")

COMPONENT = "keventing-controller"


def failure(previous: list[Condition], current: list[Condition]) -> Condition | None:
    """The Ready condition of ``current`` when it is a new failure: False now, and not False for the same
    reason before."""
    now = next((c for c in current if c.type == "Ready"), None)
    if now is None or now.status != "False":
        return None
    before = next((c for c in previous if c.type == "Ready"), None)
    if before is not None and before.status == "False" and before.reason == now.reason:
        return None
    return now


class EventRecorder:
    def __init__(self, api: k8s.ApiClient) -> None:
        self.core = k8s.CoreV1Api(api)

    async def warning(self, key: ResourceKey, uid: str | None, reason: str, message: str) -> None:
        """Record a Warning Event on the object; a failure to record is logged, never raised."""
        kind = by_kind(key.kind)
        now = datetime.now(UTC)
        event = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(name=f"{key.name}.{uuid.uuid4().hex[:16]}", namespace=key.namespace),
            involved_object=k8s.V1ObjectReference(
                api_version=f"{kind.group}/{kind.version}",
                kind=key.kind,
                name=key.name,
                namespace=key.namespace,
                uid=uid,
            ),
            reason=reason or "NotReady",
            message=message[:1024],
            type="Warning",
            source=k8s.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=COMPONENT,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            await self.core.create_namespaced_event(key.namespace, event)
        except k8s.ApiException as err:
            log.warning(
                "could not record a Kubernetes Event",
                extra={"resource": str(key), "reason": reason, "status": err.status},
            )
