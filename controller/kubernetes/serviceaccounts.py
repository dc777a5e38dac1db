"""The OIDC ServiceAccounts of Triggers and Subscriptions (authentication-oidc, :mod:`controller.identities`):
created in the resource's namespace with the resource as controlling owner, so Kubernetes' garbage collector
deletes each with its resource, as Knative's ``EnsureOIDCServiceAccountExistsForResource`` does."""

from __future__ import annotations

import logging

from kubernetes_asyncio import client as k8s

from controller.kubernetes.kinds import by_kind
from keventing.resources import ResourceKey

log = logging.getLogger("keventing.controller.kubernetes")


class ServiceAccountUnavailable(Exception):
    """The resource's ServiceAccount could not be created, or one of that name belongs to another."""


def service_account_object(key: ResourceKey, uid: str, name: str) -> k8s.V1ServiceAccount:
    """The ServiceAccount ``name`` for the resource ``key`` (uid ``uid``), owned by it."""
    owner = k8s.V1OwnerReference(
        api_version=by_kind(key.kind).api_version,
        kind=key.kind,
        name=key.name,
        uid=uid,
        controller=True,
        block_owner_deletion=False,
    )
    description = f'Service Account for OIDC Authentication for {key.kind} "{key.name}"'
    return k8s.V1ServiceAccount(
        metadata=k8s.V1ObjectMeta(
            name=name,
            namespace=key.namespace,
            owner_references=[owner],
            annotations={"description": description},
        )
    )


class ServiceAccounts:
    """Ensures each resource's OIDC ServiceAccount exists, once per resource uid (not on every pass)."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.core = k8s.CoreV1Api(api)
        self._ensured: set[tuple[ResourceKey, str, str]] = set()

    async def ensure(self, key: ResourceKey, uid: str, name: str) -> None:
        """Raises ServiceAccountUnavailable saying why the account cannot be had."""
        if (key, uid, name) in self._ensured:
            return
        try:
            await self.core.create_namespaced_service_account(
                key.namespace, service_account_object(key, uid, name)
            )
            log.info("created OIDC service account", extra={"resource": str(key), "service_account": name})
        except k8s.ApiException as err:
            if err.status != 409:
                raise ServiceAccountUnavailable(
                    f'could not create the OIDC ServiceAccount "{name}": {err.status} {err.reason}'
                ) from None
            try:
                existing = await self.core.read_namespaced_service_account(name, key.namespace)
            except k8s.ApiException as read_err:
                raise ServiceAccountUnavailable(
                    f'could not read the OIDC ServiceAccount "{name}": {read_err.status} {read_err.reason}'
                ) from None
            owners = existing.metadata.owner_references or []
            if not any(ref.uid == uid and ref.controller for ref in owners):
                raise ServiceAccountUnavailable(
                    f'ServiceAccount "{name}" exists and is not owned by {key.kind} "{key.name}"'
                ) from None
        self._ensured.add((key, uid, name))
