"""The Kubernetes adapter: kopf watches Knative's resources, the pure reconciler decides, this writes back.

kopf keeps an index of every object of the kinds keventing serves (watch events); any change schedules one
coalesced reconcile pass over the whole index, exactly as local mode does over its store. Topics and the
contract go to Kafka as in local mode (:mod:`controller.dataplane`); generated children are server-side
applied as owned objects, so that Kubernetes' garbage collector removes them with their parent; each status
subresource is patched when the wanted status differs from the one observed. Deletions that must clean up
(a Broker's topic, a Trigger's consumer group) hold a finalizer until a pass without them has run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf
from kubernetes_asyncio import client as k8s

from controller.adapter import Observed
from controller.brokerdefaults import (
    BrokerDefaults,
    BrokerDefaultsInvalid,
    broker_class,
    defaults_key,
    parse_defaults,
)
from controller.brokers import broker_config_key
from controller.conditions import invalid, keep_transition_times
from controller.connections import referenced_secrets
from controller.context import ControllerConfig
from controller.dataplane import DataPlaneAdapter, KafkaDataPlane
from controller.driver import Driver
from controller.features import features_key
from controller.identities import identity_failed
from controller.kafkafeatures import CONFIG_MAP as KAFKA_FEATURES
from controller.kubernetes.access import KubeAccess
from controller.kubernetes.addressables import AddressableLookup
from controller.kubernetes.api import JSON_PATCH, MERGE_PATCH, apply_custom_object
from controller.kubernetes.configmaps import ConfigMapWatch
from controller.kubernetes.kinds import ApiKind, by_kind, custom_kinds
from controller.kubernetes.objects import (
    ObjectInvalid,
    child_object,
    key_of,
    status_document,
    status_patch,
    to_resource,
)
from controller.kubernetes.recorder import EventRecorder, failure
from controller.kubernetes.serviceaccounts import ServiceAccounts, ServiceAccountUnavailable
from controller.resolver import foreign_refs
from keventing.resources import Broker, Condition, ConfigMap, Resource, ResourceKey, Secret, Status
from keventing.resources.base import now_rfc3339
from keventing.resources.eventing import BROKER_CLASS_ANNOTATION

log = logging.getLogger("keventing.controller.kubernetes")

FINALIZER = "keventing.knative.dev/cleanup"
# kopf's own, on the kinds it finalizes: another name, or kopf would release ours (it drops its finalizer
# from a deleted object it has no delete handler for).
KOPF_FINALIZER = "keventing.knative.dev/kopf"
FIELD_MANAGER = "keventing-controller"
# Knative's annotation naming who reconciles a Broker; Brokers of other classes are left alone.
BROKER_CLASS = BROKER_CLASS_ANNOTATION
SERVED = frozenset(api.kind for api in custom_kinds())
# Kinds whose finalizer kopf manages (they have kopf delete handlers); the operator manages the others' itself,
# with one patch per object instead of kopf's bookkeeping annotations on every object.
KOPF_FINALIZED = frozenset({"SinkBinding"})


class KubernetesIndex:
    """What the cluster holds, as the reconciler sees it: resource models by key, and invalid objects.

    ``claims`` says from an object's key and annotations whether keventing reconciles it (a Broker of
    another class is not); :meth:`reclaim` asks again of every Broker when what it answers changed.
    """

    def __init__(self, claims: Callable[[ResourceKey, Mapping[str, str]], bool]) -> None:
        self.claims = claims
        self.resources: dict[ResourceKey, Resource] = {}
        # Valid objects keventing does not claim (Brokers of other classes), kept for a later reclaim.
        self.unclaimed: dict[ResourceKey, Resource] = {}
        self.invalid: dict[ResourceKey, ObjectInvalid] = {}
        # The status each object has on the API server, as last seen or written.
        self.statuses: dict[ResourceKey, dict[str, Any]] = {}
        self.annotations: dict[ResourceKey, dict[str, str]] = {}
        self.uids: dict[ResourceKey, str] = {}

    def claimed(self, key: ResourceKey) -> bool:
        return self.claims(key, self.annotations.get(key, {}))

    def observe(self, body: Mapping[str, Any]) -> bool:
        """Record one object as the API server has it now; True when the reconciler's input changed."""
        key = key_of(body)
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return self.forget(key)
        self.statuses[key] = dict(body.get("status") or {})
        self.annotations[key] = dict(meta.get("annotations") or {})
        uid = meta.get("uid")
        if uid:
            self.uids[key] = uid
        try:
            resource = to_resource(body)
        except ObjectInvalid as err:
            gone = self.resources.pop(key, None) is not None
            self.unclaimed.pop(key, None)
            changed = str(self.invalid.get(key)) != str(err)
            self.invalid[key] = err
            return gone or (changed and self.claimed(key))
        self.invalid.pop(key, None)
        if not self.claimed(key):
            self.unclaimed[key] = resource
            return self.resources.pop(key, None) is not None
        self.unclaimed.pop(key, None)
        before = self.resources.get(key)
        self.resources[key] = resource
        return before is None or before.model_dump() != resource.model_dump()

    def reclaim(self) -> bool:
        """Ask ``claims`` again of every Broker; True when one was claimed or let go."""
        changed = False
        for key in [k for k in self.resources if k.kind == Broker.KIND and not self.claimed(k)]:
            self.unclaimed[key] = self.resources.pop(key)
            changed = True
        for key in [k for k in self.unclaimed if self.claimed(k)]:
            self.resources[key] = self.unclaimed.pop(key)
            changed = True
        return changed

    def forget(self, key: ResourceKey) -> bool:
        self.statuses.pop(key, None)
        self.annotations.pop(key, None)
        self.unclaimed.pop(key, None)
        self.uids.pop(key, None)
        gone = self.resources.pop(key, None) is not None
        return self.invalid.pop(key, None) is not None or gone


class KubernetesController(DataPlaneAdapter):
    """The Kubernetes implementation of :class:`controller.adapter.Adapter`."""

    def __init__(
        self,
        access: KubeAccess,
        config: ControllerConfig,
        data_plane: KafkaDataPlane,
        broker_classes: frozenset[str],
        resync_seconds: float,
    ) -> None:
        self.access = access
        self.api = k8s.CustomObjectsApi(access.api)
        self.config = config
        self.data_plane = data_plane
        self.broker_classes = broker_classes
        self.index = KubernetesIndex(self._claims)
        self.addressables = AddressableLookup(access.api)
        self.recorder = EventRecorder(access.api)
        self.service_accounts = ServiceAccounts(access.api)
        self.driver = Driver(self, config, resync_seconds, coalesce_seconds=0.05)
        data_plane.report_listeners.append(self.driver.changed)
        self.config_maps = ConfigMapWatch(access.api, self.driver.changed)
        self.secrets = ConfigMapWatch(access.api, self.driver.changed, Secret.KIND)
        self.defaults_key = defaults_key(config.system_namespace)
        self.defaults = BrokerDefaults()

    def _claims(self, key: ResourceKey, annotations: Mapping[str, str]) -> bool:
        if key.kind != Broker.KIND:
            return True
        return broker_class(annotations, key.namespace, self.defaults) in self.broker_classes

    # ----------------------------------------------------------------------------------------- kopf

    def registry(self) -> kopf.OperatorRegistry:
        registry = kopf.OperatorRegistry()

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return self.access.connection_info()

        @kopf.on.startup(registry=registry)
        def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
            configure_kopf(settings)

        for api in custom_kinds():
            self._watch(registry, api)
        return registry

    def _watch(self, registry: kopf.OperatorRegistry, api: ApiKind) -> None:
        kopf_finalizes = api.kind in KOPF_FINALIZED

        @kopf.on.event(api.group, api.version, api.plural, registry=registry)
        async def on_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
            deleted = event.get("type") == "DELETED"
            if not (deleted or kopf_finalizes) and await self._finalize(api, body):
                return  # not reconciled before it carries the finalizer: its event with it follows
            if deleted:
                changed = self.index.forget(key_of(body))
            else:
                changed = self.index.observe(body)
            if changed:
                self.driver.changed()

        if kopf_finalizes:
            # The SinkBinding binder has a delete handler of its own; kopf runs both, then lets it go.
            @kopf.on.delete(api.group, api.version, api.plural, registry=registry)
            async def on_delete(body: kopf.Body, **_: Any) -> None:
                self.index.forget(key_of(body))
                await self.driver.passed_after_now()

    def _claimed(self, body: Mapping[str, Any]) -> bool:
        """Whether keventing reconciles the object (a Broker of another class it leaves alone entirely)."""
        metadata = body.get("metadata") or {}
        return self._claims(key_of(body), metadata.get("annotations") or {})

    async def _finalize(self, api: ApiKind, body: Mapping[str, Any]) -> bool:
        """Hold deletion until it is cleaned up: add the finalizer to a live object before anything is
        made for it (True: added now, or tried); once the object is being deleted, remove it after a pass
        without the resource (its topic, consumer group and contract entry are gone then). One JSON patch
        each way, guarded by the resourceVersion it was read at; a conflict means a newer event for the
        object is on its way, and that one retries."""
        metadata = body.get("metadata") or {}
        finalizers = list(metadata.get("finalizers") or [])
        patch: list[dict[str, Any]]
        adding = False
        if metadata.get("deletionTimestamp"):
            if FINALIZER not in finalizers:
                return False
            self.index.forget(key_of(body))
            await self.driver.passed_after_now()
            patch = [{"op": "remove", "path": f"/metadata/finalizers/{finalizers.index(FINALIZER)}"}]
        elif FINALIZER in finalizers or not self._claimed(body):
            return False
        elif not self._claims(key_of(body), metadata.get("annotations") or {}):
            return False  # a Broker of another class is left alone
        elif finalizers:
            adding = True
            patch = [{"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}]
        else:
            adding = True
            patch = [{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]
        guard = {"op": "test", "path": "/metadata/resourceVersion", "value": metadata.get("resourceVersion")}
        try:
            await self.api.patch_namespaced_custom_object(
                api.group,
                api.version,
                metadata["namespace"],
                api.plural,
                metadata["name"],
                [guard, *patch],
                **JSON_PATCH,
            )
        except k8s.ApiException as err:
            if err.status not in (404, 409, 422):  # gone, or changed meanwhile: the next event retries
                raise
        return adding

    # ------------------------------------------------------------------------------------- the Adapter

    async def observe(self) -> Observed:
        await self._read_defaults()
        brokers = [r for r in self.index.resources.values() if isinstance(r, Broker)]
        await self._stamp_classes(brokers)
        # The broker configs the claimed Brokers read; the reconciler finds them among the resources.
        system = self.config.system_namespace
        wanted = {
            self.defaults_key,
            features_key(system),
            ResourceKey(ConfigMap.KIND, system, KAFKA_FEATURES),
        } | {
            broker_config_key(broker, ref)
            for broker in brokers
            if (ref := broker.spec.config or self.defaults.config(broker.namespace)) is not None
            and ref.kind == ConfigMap.KIND
        }
        await self.config_maps.follow(wanted)
        self.config_maps.retain(wanted)
        resources: list[Resource] = [*self.index.resources.values(), *self.config_maps.config_maps()]
        # The Secrets the Kafka connections of brokers' configs, KafkaSinks and KafkaSources name.
        secrets = referenced_secrets(resources)
        await self.secrets.follow(secrets)
        self.secrets.retain(secrets)
        resources += self.secrets.config_maps()
        addressables = await self.addressables.lookup(foreign_refs(resources))
        return Observed(
            resources,
            self.data_plane.topic_errors,
            self.data_plane.source_reports,
            addressables,
            self.data_plane.published,
            self.data_plane.connection_errors,
        )

    async def start(self) -> None:
        """Read config-br-defaults before kopf's first events: which Brokers get the finalizer depends on it."""
        await self._read_defaults()

    async def _read_defaults(self) -> None:
        """Read config-br-defaults (an invalid one claims as if absent; the reconciler reports it)."""
        await self.config_maps.follow([self.defaults_key])
        try:
            defaults = parse_defaults(self.config_maps.data(self.defaults_key) or {})
        except BrokerDefaultsInvalid:
            defaults = BrokerDefaults()
        if defaults != self.defaults:
            self.defaults = defaults
            self.index.reclaim()

    async def _stamp_classes(self, brokers: list[Broker]) -> None:
        """Write the default class onto each claimed Broker that has none, as Knative's defaulting webhook
        does: a later change of the default then cannot take a Broker (and its topic) from keventing."""
        if not self.config_maps.has_read(self.defaults_key):
            return  # the default is not known yet
        kind = by_kind(Broker.KIND)
        for broker in brokers:
            annotations = self.index.annotations.setdefault(broker.key, {})
            if BROKER_CLASS in annotations:
                continue
            stamped = broker_class(annotations, broker.namespace, self.defaults)
            patch = {"metadata": {"annotations": {BROKER_CLASS: stamped}}}
            try:
                await self.api.patch_namespaced_custom_object(
                    kind.group, kind.version, broker.namespace, kind.plural, broker.name, patch, **MERGE_PATCH
                )
            except k8s.ApiException as err:
                if err.status != 404:
                    raise
                continue
            annotations[BROKER_CLASS] = stamped

    async def write_children(self, children: Mapping[ResourceKey, Resource]) -> None:
        """Each child on its own: one that cannot be written (its namespace being deleted, a quota, a webhook)
        does not keep the others from being written or deleted; the errors are raised together afterwards."""
        errors: list[Exception] = []
        for key, child in children.items():
            try:
                await apply_custom_object(self.api, child_object(child), FIELD_MANAGER)
            except k8s.ApiException as err:
                if namespace_terminating(err):
                    # Nothing can be created there any more, and its parent goes with the namespace.
                    log.info(
                        "not writing a generated resource in a namespace being deleted",
                        extra={"resource": str(key)},
                    )
                    continue
                log.warning(
                    "could not write a generated resource",
                    extra={"resource": str(key), "status": err.status, "reason": err.reason},
                )
                errors.append(err)
        for key, resource in list(self.index.resources.items()):
            if key in children or not _controlled_by_served_kind(resource):
                continue
            kind = by_kind(key.kind)
            try:
                await self.api.delete_namespaced_custom_object(
                    kind.group, kind.version, key.namespace, kind.plural, key.name
                )
            except k8s.ApiException as err:
                if err.status != 404:
                    log.warning(
                        "could not delete a generated resource",
                        extra={"resource": str(key), "status": err.status, "reason": err.reason},
                    )
                    errors.append(err)
                    continue
            log.info("deleted generated resource", extra={"resource": str(key)})
        if errors:
            raise ExceptionGroup(f"{len(errors)} generated resource(s) not written or deleted", errors)

    async def write_statuses(self, statuses: Mapping[ResourceKey, Status]) -> None:
        wanted = dict(statuses)
        for key, err in self.index.invalid.items():
            if self.index.claimed(key):
                wanted[key] = Status(conditions=invalid(str(err)))
        now = now_rfc3339()
        errors: list[Exception] = []
        for key, status in wanted.items():
            current = self.index.statuses.get(key)
            if key.kind not in SERVED or current is None:
                continue  # not an object of this cluster (yet), or deleted meanwhile
            status = await self._ensure_identity(key, status)
            previous = [Condition.model_validate(c) for c in current.get("conditions", [])]
            status = keep_transition_times(status, previous, now)
            document = status_document(status)
            patch = status_patch(document, current)
            if patch is None:
                continue
            kind = by_kind(key.kind)
            try:
                await self.api.patch_namespaced_custom_object_status(
                    kind.group,
                    kind.version,
                    key.namespace,
                    kind.plural,
                    key.name,
                    patch,
                    **MERGE_PATCH,
                )
            except k8s.ApiException as err:
                if err.status != 404:  # deleted meanwhile, else one object's error and the others go on
                    log.warning(
                        "could not write a status",
                        extra={"resource": str(key), "status": err.status, "reason": err.reason},
                    )
                    errors.append(err)
                continue
            self.index.statuses[key] = document
            failed = failure(previous, status.conditions)
            if failed is not None:
                await self.recorder.warning(
                    key, self.index.uids.get(key), failed.reason or "", failed.message or ""
                )
        if errors:
            raise ExceptionGroup(f"{len(errors)} status(es) not written", errors)

    async def _ensure_identity(self, key: ResourceKey, status: Status) -> Status:
        """Create the OIDC ServiceAccount a status names (authentication-oidc) before the status says it
        exists; a failure makes OIDCIdentityCreated False, with why."""
        account = (status.auth or {}).get("serviceAccountName")
        uid = self.index.uids.get(key)
        if not account or uid is None:
            return status
        try:
            await self.service_accounts.ensure(key, uid, account)
        except ServiceAccountUnavailable as err:
            log.warning("no OIDC identity", extra={"resource": str(key), "reason": str(err)})
            return identity_failed(status, str(err))
        return status


def namespace_terminating(err: k8s.ApiException) -> bool:
    """Whether the API server refused to create an object because its namespace is being deleted."""
    body = err.body.decode(errors="replace") if isinstance(err.body, bytes) else str(err.body or "")
    return err.status == 403 and "NamespaceTerminating" in body


def _controlled_by_served_kind(resource: Resource) -> bool:
    return any(ref.controller and ref.kind in SERVED for ref in resource.metadata.ownerReferences)


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    settings.persistence.finalizer = KOPF_FINALIZER
    # kopf's bookkeeping on users' objects goes under keventing's own annotation prefix.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="keventing.knative.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="keventing.knative.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # Kubernetes Events for failures, not for every handler run
    settings.watching.server_timeout = 300
