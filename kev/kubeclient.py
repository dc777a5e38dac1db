"""``kev`` against a Kubernetes API server: Knative's custom resources through kubernetes_asyncio.

Applies are server-side applies (field manager ``kev``), so ``kev apply`` and ``kubectl apply
--server-side`` share one notion of ownership; statuses are the ones the operator wrote.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from controller.kubernetes.access import KubeAccess
from controller.kubernetes.api import APPLY_PATCH, MERGE_PATCH, apply_custom_object
from controller.kubernetes.kinds import CORE_KINDS, ApiKind, by_kind
from controller.kubernetes.objects import ObjectInvalid, child_object, to_resource
from kev.client import FIELD_MANAGER, ClientError
from keventing.resources import Resource, ResourceKey

log = logging.getLogger("kev")


def from_object(body: dict[str, Any]) -> Resource:
    """The model of an API object with the status the operator wrote."""
    resource = to_resource(body)
    resource.status = type(resource.status).model_validate(body.get("status") or {})
    return resource


class KubernetesClient:
    def __init__(self, access: KubeAccess) -> None:
        self.access = access
        self.custom = k8s.CustomObjectsApi(access.api)
        self.core = k8s.CoreV1Api(access.api)
        self.server = access.configuration.host

    @classmethod
    @asynccontextmanager
    async def connect(cls, kubeconfig: str | None, context: str | None) -> AsyncIterator[KubernetesClient]:
        try:
            access = await KubeAccess.load(kubeconfig, context)
        except (k8s_config.ConfigException, OSError) as err:
            raise ClientError(f"cannot load the Kubernetes configuration: {err}") from None
        client = cls(access)
        try:
            yield client
        except k8s.ApiException as err:
            raise ClientError(client.explain(err)) from None
        except OSError as err:  # aiohttp's connection errors are OSErrors
            raise ClientError(f"cannot reach the Kubernetes API server at {client.server}: {err}") from None
        finally:
            await access.close()

    def explain(self, err: k8s.ApiException) -> str:
        message = _body(err).get("message") or err.reason
        if err.status == 404:
            return f"{message} (are keventing's CRDs installed? kubectl apply -f charts/keventing/crds)"
        return f"the Kubernetes API server at {self.server} answered {err.status}: {message}"

    # ------------------------------------------------------------------------------- ResourceClient

    async def apply_all(self, resources: list[Resource]) -> list[str]:
        return [await self.apply(resource) for resource in resources]

    async def apply(self, resource: Resource) -> str:
        _refuse_secrets(resource.KIND)
        before = await self._get_object(resource.key)
        body = child_object(resource)
        if resource.KIND in CORE_KINDS:
            applied = await self.core.patch_namespaced_config_map(
                resource.name,
                resource.namespace,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                **APPLY_PATCH,
            )
            after = self.access.api.sanitize_for_serialization(applied)
        else:
            kind = self._api(resource.KIND, resource.apiVersion)
            after = await apply_custom_object(self.custom, body, FIELD_MANAGER, kind)
        if before is None or after is None:
            return "created"
        version = before["metadata"].get("resourceVersion")
        return "unchanged" if after["metadata"].get("resourceVersion") == version else "configured"

    async def list(self, kind: str, namespace: str | None) -> list[Resource]:
        _refuse_secrets(kind)
        if kind in CORE_KINDS:
            if namespace:
                found = await self.core.list_namespaced_config_map(namespace)
            else:
                found = await self.core.list_config_map_for_all_namespaces()
            items = self.access.api.sanitize_for_serialization(found).get("items", [])
            for item in items:
                item.update(apiVersion="v1", kind=kind)
        else:
            api = self._api(kind)
            if namespace:
                listing = await self.custom.list_namespaced_custom_object(
                    api.group, api.version, namespace, api.plural
                )
            else:
                listing = await self.custom.list_cluster_custom_object(api.group, api.version, api.plural)
            items = listing.get("items", [])
        out = []
        for item in items:
            try:
                out.append(from_object(item))
            except ObjectInvalid as err:
                log.warning("skipping %s: keventing's models reject it: %s", err.key, err)
        return sorted(out, key=lambda r: (r.namespace, r.name))

    async def get(self, key: ResourceKey) -> Resource | None:
        _refuse_secrets(key.kind)
        body = await self._get_object(key)
        return from_object(body) if body is not None else None

    async def delete(self, key: ResourceKey) -> bool:
        _refuse_secrets(key.kind)
        try:
            if key.kind in CORE_KINDS:
                await self.core.delete_namespaced_config_map(key.name, key.namespace)
            else:
                api = self._api(key.kind)
                await self.custom.delete_namespaced_custom_object(
                    api.group, api.version, key.namespace, api.plural, key.name
                )
        except k8s.ApiException as err:
            if err.status == 404 and _object_missing(err):
                return False
            raise
        return True

    async def annotate(self, key: ResourceKey, annotations: Mapping[str, str | None]) -> bool:
        """A JSON merge patch of the annotations alone (None removes one), as ``kubectl annotate`` makes it."""
        _refuse_secrets(key.kind)
        patch = {"metadata": {"annotations": dict(annotations)}}
        try:
            if key.kind in CORE_KINDS:
                await self.core.patch_namespaced_config_map(key.name, key.namespace, patch, **MERGE_PATCH)
            else:
                api = self._api(key.kind)
                await self.custom.patch_namespaced_custom_object(
                    api.group, api.version, key.namespace, api.plural, key.name, patch, **MERGE_PATCH
                )
        except k8s.ApiException as err:
            if err.status == 404 and _object_missing(err):
                return False
            raise
        return True

    # ---------------------------------------------------------------------------------------- helpers

    @staticmethod
    def _api(kind: str, api_version: str | None = None) -> ApiKind:
        api = by_kind(kind)
        if api_version and api_version != api.api_version:
            # Served at one of the model's other versions (KafkaChannel, say): keep the one asked for.
            group, _, version = api_version.rpartition("/")
            return ApiKind(group, version, api.plural, api.kind)
        return api

    async def _get_object(self, key: ResourceKey) -> dict[str, Any] | None:
        try:
            if key.kind in CORE_KINDS:
                found = await self.core.read_namespaced_config_map(key.name, key.namespace)
                body: dict[str, Any] = self.access.api.sanitize_for_serialization(found)
                body.update(apiVersion="v1", kind=key.kind)
                return body
            api = self._api(key.kind)
            return dict(
                await self.custom.get_namespaced_custom_object(
                    api.group, api.version, key.namespace, api.plural, key.name
                )
            )
        except k8s.ApiException as err:
            if err.status == 404 and _object_missing(err):
                return None
            raise


def _object_missing(err: k8s.ApiException) -> bool:
    """A 404 for the object itself, not for its whole kind (a missing CRD is an error, not absence)."""
    return bool((_body(err).get("details") or {}).get("name"))


def _body(err: k8s.ApiException) -> dict[str, Any]:
    """The Status object the API server answered with (empty if it sent none)."""
    try:
        body = orjson.loads(err.body or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _refuse_secrets(kind: str) -> None:
    """On Kubernetes, Secrets are kubectl's business: kev neither writes nor reads them there."""
    if kind == "Secret":
        raise ClientError("kev does not handle Secrets on Kubernetes: use kubectl create secret generic ...")
