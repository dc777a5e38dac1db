"""SinkBinding and ContainerSource on Kubernetes, the I/O part: kopf handlers that keep what the webhook
knows of every SinkBinding, patch the subjects that exist when a binding is created, changed or deleted,
and apply each ContainerSource's Deployment.

A binding binds once the operator has resolved its sink (``status.sinkUri``, written by the reconciler);
until then, and after it is deleted, its subjects carry nothing of it. Existing Pods and Jobs cannot have
their pod templates changed (the API server refuses): they are bound when admitted, by the webhook.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import kopf
from kubernetes_asyncio import client as k8s

from controller.kubernetes.access import KubeAccess
from controller.kubernetes.api import APPLY_PATCH
from controller.kubernetes.bindings import (
    Binding,
    SubjectInvalid,
    SubjectKind,
    binding_of,
    desired_env,
    pod_spec_patch,
)
from controller.kubernetes.deployments import container_source_deployment
from controller.kubernetes.objects import key_of
from controller.settings import ControllerSettings
from keventing.resources import ResourceKey

log = logging.getLogger("keventing.controller.binder")

FIELD_MANAGER = "keventing-controller"
JSON_PATCH: dict[str, Any] = {"_content_type": "application/json-patch+json"}
# Kinds whose pod template the API server lets an update change.
PATCHABLE = frozenset({"Deployment", "StatefulSet", "DaemonSet", "CronJob"})
SOURCES = ("sources.knative.dev", "v1")


class SinkBinder:
    def __init__(self, access: KubeAccess, settings: ControllerSettings) -> None:
        self.api = k8s.CustomObjectsApi(access.api)
        self.access = access
        self.settings = settings
        self.bindings: dict[ResourceKey, Binding] = {}

    def current(self) -> list[Binding]:
        return list(self.bindings.values())

    # ----------------------------------------------------------------------------------------- kopf

    def register(self, registry: kopf.OperatorRegistry) -> None:
        @kopf.on.event(*SOURCES, "sinkbindings", registry=registry)
        async def on_binding(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
            key = key_of(body)
            if event.get("type") == "DELETED" or (body.get("metadata") or {}).get("deletionTimestamp"):
                return  # unbound by on_binding_deleted, before the finalizer goes
            previous = self.bindings.pop(key, None)
            try:
                binding = binding_of(body)
            except SubjectInvalid as err:
                log.warning("SinkBinding cannot bind", extra={"resource": str(key), "error": str(err)})
                binding = None
            if binding is not None:
                self.bindings[key] = binding
            if binding != previous:
                await self.sync([b for b in (previous, binding) if b is not None])

        @kopf.on.delete(*SOURCES, "sinkbindings", registry=registry)
        async def on_binding_deleted(body: kopf.Body, **_: Any) -> None:
            previous = self.bindings.pop(key_of(body), None)
            if previous is not None:
                await self.sync([previous])

        @kopf.on.event(*SOURCES, "containersources", registry=registry)
        async def on_container_source(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
            if event.get("type") == "DELETED" or (body.get("metadata") or {}).get("deletionTimestamp"):
                return  # the garbage collector deletes the Deployment it owns
            deployment = container_source_deployment(body)
            meta = deployment["metadata"]
            await self.api.patch_namespaced_custom_object(
                "apps",
                "v1",
                meta["namespace"],
                "deployments",
                meta["name"],
                deployment,
                field_manager=FIELD_MANAGER,
                force=True,
                **APPLY_PATCH,
            )

    # ------------------------------------------------------------------------------------- subjects

    async def sync(self, touched: Iterable[Binding]) -> None:
        """Bring every existing subject of the ``touched`` bindings (old and new versions) in line with the
        bindings there are now."""
        for binding in touched:
            if binding.kind.kind not in PATCHABLE:
                continue
            for obj in await self._list(binding.kind, binding.key.namespace):
                if binding.matches(obj):
                    await self._bind(obj, binding.kind)

    async def _list(self, kind: SubjectKind, namespace: str) -> list[dict[str, Any]]:
        listed = await self.api.list_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural
        )
        items: list[dict[str, Any]] = listed.get("items") or []
        for item in items:  # a list's items do not carry their kind
            item.setdefault("kind", kind.kind)
        return items

    async def _bind(self, obj: dict[str, Any], kind: SubjectKind) -> None:
        meta = obj.get("metadata") or {}
        for attempt in range(5):
            patch = pod_spec_patch(obj, kind, desired_env(obj, self.bindings.values()))
            if not patch:
                return
            # Only onto the version read: a concurrent change makes the test fail and the object is read again.
            guarded = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")}
            ]
            try:
                await self.api.patch_namespaced_custom_object(
                    kind.group,
                    kind.version,
                    meta["namespace"],
                    kind.plural,
                    meta["name"],
                    guarded + patch,
                    **JSON_PATCH,
                )
                log.info(
                    "bound subject", extra={"resource": f"{kind.kind}/{meta['namespace']}/{meta['name']}"}
                )
                return
            except k8s.ApiException as err:
                if err.status == 404:
                    return
                if err.status not in (409, 422) or attempt == 4:
                    raise
            obj = await self.api.get_namespaced_custom_object(
                kind.group, kind.version, meta["namespace"], kind.plural, meta["name"]
            )
            obj.setdefault("kind", kind.kind)
            meta = obj.get("metadata") or {}
