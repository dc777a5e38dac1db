"""sources.knative.dev resources: PingSource, ApiServerSource, ContainerSource, SinkBinding (v1) and KafkaSource
(v1beta1).

Every source embeds Knative's SourceSpec (``sink`` and ``ceOverrides``) and reports a SourceStatus
(``sinkUri``, ``ceAttributes``). The Kubernetes-only parts (a ContainerSource's image, a SinkBinding's
subject) are accepted as written so that the same YAML applies in both modes.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal

import orjson
from pydantic import Field

from keventing.cron import InvalidSchedule, parse_schedule
from keventing.resources.base import Destination, Model, OpenModel, Resource, ResourceInvalid, Status
from keventing.resources.delivery import DeliverySpec

_EXTENSION_NAME = re.compile(r"^[a-z0-9]+$")
KAFKA_KEY_TYPE_LABEL = "kafkasources.sources.knative.dev/key-type"
KAFKA_KEY_TYPES = ("string", "int", "float", "byte-array")


class CloudEventOverrides(Model):
    """Extensions added to every event a source sends (Knative's ``ceOverrides``)."""

    extensions: dict[str, str] = Field(default_factory=dict)

    def validate_at(self, path: str) -> None:
        for name in self.extensions:
            if not _EXTENSION_NAME.match(name):
                raise ResourceInvalid(
                    f"{path}.extensions.{name}", "keys are expected to be alphanumeric (lower-case a-z, 0-9)"
                )


class CloudEventAttributes(OpenModel):
    type: str
    source: str


class SourceStatus(Status):
    sinkUri: str | None = None
    sinkCACerts: str | None = None
    sinkAudience: str | None = None
    ceAttributes: list[CloudEventAttributes] | None = None


class SourceResource(Resource):
    """What every source shares: a sink and CloudEvent overrides."""

    status: SourceStatus = Field(default_factory=SourceStatus)

    @property
    def sink(self) -> Destination:
        sink: Destination = self.spec.sink
        return sink

    @property
    def ce_overrides(self) -> dict[str, str]:
        overrides: CloudEventOverrides | None = self.spec.ceOverrides
        return dict(overrides.extensions) if overrides else {}

    def validate_semantics(self) -> None:
        self.spec.sink.validate_at("spec.sink")
        if self.spec.ceOverrides is not None:
            self.spec.ceOverrides.validate_at("spec.ceOverrides")


# ---------------------------------------------------------------------------------------- PingSource

PING_EVENT_TYPE = "dev.knative.sources.ping"
DEFAULT_SCHEDULE = "* * * * *"


def ping_event_source(namespace: str, name: str) -> str:
    return f"/apis/v1/namespaces/{namespace}/pingsources/{name}"


class PingSourceSpec(Model):
    schedule: str = DEFAULT_SCHEDULE
    timezone: str | None = None
    contentType: str | None = None
    data: str | None = None
    dataBase64: str | None = None
    sink: Destination
    ceOverrides: CloudEventOverrides | None = None


class PingSource(SourceResource):
    API_VERSIONS = ("sources.knative.dev/v1", "sources.knative.dev/v1beta2")
    KIND = "PingSource"
    PLURAL = "pingsources"

    spec: PingSourceSpec

    @property
    def schedule(self) -> str:
        return self.spec.schedule or DEFAULT_SCHEDULE  # Knative defaults an empty schedule too

    @property
    def payload(self) -> bytes | None:
        """The data every tick carries: dataBase64 decoded, or data as written."""
        if self.spec.dataBase64:
            return base64.b64decode(self.spec.dataBase64)
        if self.spec.data:
            return self.spec.data.encode()
        return None

    def validate_semantics(self) -> None:
        super().validate_semantics()
        try:
            parse_schedule(self.schedule, self.spec.timezone)
        except InvalidSchedule as err:
            raise ResourceInvalid(f"spec.{err.field}", str(err)) from None
        spec = self.spec
        if spec.data and spec.dataBase64:
            raise ResourceInvalid("spec", "expected exactly one, got both: data, dataBase64")
        if spec.dataBase64:
            try:
                decoded = base64.b64decode(spec.dataBase64, validate=True)
            except (binascii.Error, ValueError) as err:
                raise ResourceInvalid("spec.dataBase64", f"invalid base64: {err}") from None
            _check_json(spec.contentType, decoded, "spec.dataBase64")
        elif spec.data:
            _check_json(spec.contentType, spec.data.encode(), "spec.data")


def _check_json(content_type: str | None, data: bytes, path: str) -> None:
    # Knative checks JSON data only for exactly application/json, and wants an object.
    if content_type != "application/json":
        return
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise ResourceInvalid(path, f"invalid JSON for contentType application/json: {err}") from None
    if not isinstance(value, dict):
        raise ResourceInvalid(path, "JSON data must be an object")


# ----------------------------------------------------------------------------------- ApiServerSource

APISERVER_REFERENCE_MODE = "Reference"
APISERVER_RESOURCE_MODE = "Resource"
APISERVER_EVENT_TYPES = {
    APISERVER_RESOURCE_MODE: (
        "dev.knative.apiserver.resource.add",
        "dev.knative.apiserver.resource.update",
        "dev.knative.apiserver.resource.delete",
    ),
    APISERVER_REFERENCE_MODE: (
        "dev.knative.apiserver.ref.add",
        "dev.knative.apiserver.ref.update",
        "dev.knative.apiserver.ref.delete",
    ),
}
_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class LabelSelectorRequirement(Model):
    key: str
    operator: str
    values: list[str] | None = None


class LabelSelector(Model):
    """Kubernetes' LabelSelector: ``matchLabels`` and ``matchExpressions``, ANDed."""

    matchLabels: dict[str, str] | None = None
    matchExpressions: list[LabelSelectorRequirement] | None = None

    def validate_at(self, path: str) -> None:
        for i, requirement in enumerate(self.matchExpressions or []):
            where = f"{path}.matchExpressions[{i}]"
            if requirement.operator not in _SELECTOR_OPERATORS:
                raise ResourceInvalid(
                    f"{where}.operator",
                    f"must be one of {', '.join(_SELECTOR_OPERATORS)}, got {requirement.operator!r}",
                )
            has_values = bool(requirement.values)
            if requirement.operator in ("In", "NotIn") and not has_values:
                raise ResourceInvalid(f"{where}.values", f"must be non-empty for {requirement.operator}")
            if requirement.operator in ("Exists", "DoesNotExist") and has_values:
                raise ResourceInvalid(f"{where}.values", f"must be empty for {requirement.operator}")

    def to_query(self) -> str:
        """The selector in the API server's ``labelSelector`` query syntax (``app=x,tier in (a,b)``)."""
        parts = [f"{key}={value}" for key, value in sorted((self.matchLabels or {}).items())]
        for requirement in self.matchExpressions or []:
            values = ",".join(requirement.values or [])
            parts.append(
                {
                    "In": f"{requirement.key} in ({values})",
                    "NotIn": f"{requirement.key} notin ({values})",
                    "Exists": requirement.key,
                    "DoesNotExist": f"!{requirement.key}",
                }[requirement.operator]
            )
        return ",".join(parts)


class APIVersionKind(Model):
    apiVersion: str
    kind: str


class APIVersionKindSelector(Model):
    apiVersion: str
    kind: str
    selector: LabelSelector | None = None


def _validate_api_version(value: str, path: str) -> None:
    # Kubernetes' ParseGroupVersion: "v1", or "group/version" with one slash and both parts set.
    parts = value.split("/")
    if not value or len(parts) > 2 or not all(parts):
        raise ResourceInvalid(path, f"invalid value: {value!r} (expected VERSION or GROUP/VERSION)")


class ApiServerSourceSpec(Model):
    resources: list[APIVersionKindSelector] = Field(default_factory=list)
    owner: APIVersionKind | None = None
    mode: str = APISERVER_REFERENCE_MODE
    serviceAccountName: str | None = None
    namespaceSelector: LabelSelector | None = None
    filters: list[dict[str, Any]] | None = None
    sink: Destination
    ceOverrides: CloudEventOverrides | None = None


class ApiServerSourceStatus(SourceStatus):
    namespaces: list[str] | None = None


class ApiServerSource(SourceResource):
    API_VERSIONS = ("sources.knative.dev/v1",)
    KIND = "ApiServerSource"
    PLURAL = "apiserversources"

    spec: ApiServerSourceSpec
    status: ApiServerSourceStatus = Field(default_factory=ApiServerSourceStatus)

    @property
    def service_account(self) -> str:
        return self.spec.serviceAccountName or "default"  # Knative's default

    @property
    def mode(self) -> str:
        return self.spec.mode or APISERVER_REFERENCE_MODE

    def validate_semantics(self) -> None:
        from keventing.filters import FilterError, validate_filters

        super().validate_semantics()
        spec = self.spec
        if self.mode not in APISERVER_EVENT_TYPES:
            raise ResourceInvalid(
                "spec.mode",
                f"invalid value: {spec.mode!r} (expected {APISERVER_REFERENCE_MODE} or {APISERVER_RESOURCE_MODE})",
            )
        if not spec.resources:
            raise ResourceInvalid("spec.resources", "missing field(s)")
        for i, resource in enumerate(spec.resources):
            _validate_api_version(resource.apiVersion, f"spec.resources[{i}].apiVersion")
            if not resource.kind.strip():
                raise ResourceInvalid(f"spec.resources[{i}].kind", "missing field(s)")
            if resource.selector is not None:
                resource.selector.validate_at(f"spec.resources[{i}].selector")
        if spec.owner is not None:
            _validate_api_version(spec.owner.apiVersion, "spec.owner.apiVersion")
            if not spec.owner.kind.strip():
                raise ResourceInvalid("spec.owner.kind", "missing field(s)")
        if spec.namespaceSelector is not None:
            spec.namespaceSelector.validate_at("spec.namespaceSelector")
        try:
            validate_filters(spec.filters)
        except FilterError as err:
            raise ResourceInvalid("", str(err)) from None


# ----------------------------------------------------------------------------------- ContainerSource


class EnvVar(OpenModel):
    name: str
    value: str | None = None
    valueFrom: dict[str, Any] | None = None


class Container(OpenModel):
    """A Kubernetes container; locally ``command``, ``args``, ``env`` and ``workingDir`` are what runs."""

    name: str
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] = Field(default_factory=list)
    workingDir: str | None = None


class PodSpec(OpenModel):
    containers: list[Container] = Field(default_factory=list)


class PodTemplateSpec(OpenModel):
    metadata: dict[str, Any] | None = None
    spec: PodSpec = Field(default_factory=PodSpec)


# What a ContainerSource generates on Kubernetes, named as Knative names them: <source>-deployment, bound by
# <source>-sinkbinding.
CONTAINER_SOURCE_DEPLOYMENT_SUFFIX = "-deployment"
CONTAINER_SOURCE_BINDING_SUFFIX = "-sinkbinding"


class ContainerSourceSpec(Model):
    template: PodTemplateSpec
    sink: Destination
    ceOverrides: CloudEventOverrides | None = None


class ContainerSource(SourceResource):
    API_VERSIONS = ("sources.knative.dev/v1",)
    KIND = "ContainerSource"
    PLURAL = "containersources"

    spec: ContainerSourceSpec

    @property
    def container(self) -> Container:
        return self.spec.template.spec.containers[0]

    def validate_semantics(self) -> None:
        super().validate_semantics()
        if not self.spec.template.spec.containers:
            raise ResourceInvalid("spec.template.spec.containers", "missing field(s)")
        for i, container in enumerate(self.spec.template.spec.containers):
            if not container.name:
                raise ResourceInvalid(f"spec.template.spec.containers[{i}].name", "missing field(s)")


# --------------------------------------------------------------------------------------- SinkBinding


# The kinds a SinkBinding binds on Kubernetes (those with a pod template), and the API each is served at.
BINDABLE_KINDS = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "Pod": "v1",
}


class BindingSubject(OpenModel):
    apiVersion: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    selector: dict[str, Any] | None = None

    def validate_at(self, path: str) -> None:
        api_version = BINDABLE_KINDS.get(self.kind or "")
        if api_version is None:
            raise ResourceInvalid(
                f"{path}.kind", f"{self.kind!r} cannot be bound; expected one of {', '.join(BINDABLE_KINDS)}"
            )
        if self.apiVersion and self.apiVersion != api_version:
            raise ResourceInvalid(
                f"{path}.apiVersion", f"a {self.kind} is {api_version}, got {self.apiVersion!r}"
            )
        if (self.name is None) == (self.selector is None):
            raise ResourceInvalid(path, "expected exactly one of name, selector")


class SinkBindingSpec(Model):
    subject: BindingSubject | None = None
    sink: Destination
    ceOverrides: CloudEventOverrides | None = None


class SinkBinding(SourceResource):
    API_VERSIONS = ("sources.knative.dev/v1",)
    KIND = "SinkBinding"
    PLURAL = "sinkbindings"

    spec: SinkBindingSpec

    def validate_semantics(self) -> None:
        super().validate_semantics()
        subject = self.spec.subject
        if subject is not None and subject.namespace and subject.namespace != self.namespace:
            raise ResourceInvalid(
                "spec.subject.namespace",
                f"must be the SinkBinding's namespace {self.namespace!r}, got {subject.namespace!r}",
            )
        if subject is not None:
            subject.validate_at("spec.subject")


# --------------------------------------------------------------------------------------- KafkaSource

KAFKA_EVENT_TYPE = "dev.knative.kafka.event"
# The most consumers one KafkaSource's group may have: each is a Kafka client with its own connections and
# fetch buffers in a dispatcher, and a group larger than its topics' partitions gives the extra ones nothing.
KAFKA_SOURCE_MAX_CONSUMERS = 100


def kafka_event_source(namespace: str, name: str, topic: str) -> str:
    return f"/apis/v1/namespaces/{namespace}/kafkasources/{name}#{topic}"


class KafkaSourceSpec(Model):
    bootstrapServers: list[str]
    topics: list[str]
    consumerGroup: str | None = None
    initialOffset: Literal["earliest", "latest", ""] = "latest"
    delivery: DeliverySpec | None = None
    ordering: Literal["ordered", "unordered"] | None = None
    # Knative's number of consumers in the source's consumer group (default 1); the dispatcher replicas
    # run them between them (dispatcher/manager.py).
    consumers: int | None = None
    # Knative's `sasl` and `tls` (each value a secretKeyRef): the credentials for its cluster, read by
    # controller/connections.py.
    net: dict[str, Any] | None = None
    sink: Destination
    ceOverrides: CloudEventOverrides | None = None


class KafkaSourceStatus(SourceStatus):
    # Knative's "total number of consumers actually running in the consumer group" (the scale subresource's
    # status replicas): what the dispatcher replicas run between them.
    consumers: int | None = None


class KafkaSource(SourceResource):
    # v1 (eventing-kafka-broker 1.17) has v1beta1's shape: both are served by one model, v1beta1 stays the
    # stored version so that existing objects need no migration.
    API_VERSIONS = ("sources.knative.dev/v1beta1", "sources.knative.dev/v1")
    KIND = "KafkaSource"
    PLURAL = "kafkasources"

    spec: KafkaSourceSpec
    status: KafkaSourceStatus = Field(default_factory=KafkaSourceStatus)

    @property
    def initial_offset(self) -> Literal["earliest", "latest"]:
        return "earliest" if self.spec.initialOffset == "earliest" else "latest"

    @property
    def delivery_order(self) -> Literal["ordered", "unordered"]:
        return self.spec.ordering or "ordered"  # Knative's KafkaSource default

    @property
    def consumer_group(self) -> str:
        # Knative's defaulting webhook stores knative-kafka-source-<uuid>; the uid is stable here.
        return self.spec.consumerGroup or f"knative-kafka-source-{self.metadata.uid or self.name}"

    @property
    def key_type(self) -> str | None:
        return self.metadata.labels.get(KAFKA_KEY_TYPE_LABEL)

    @property
    def consumers(self) -> int:
        return 1 if self.spec.consumers is None else self.spec.consumers  # Knative's default

    def validate_semantics(self) -> None:
        super().validate_semantics()
        spec = self.spec
        if not [s for s in spec.bootstrapServers if s]:
            raise ResourceInvalid("spec.bootstrapServers", "missing field(s)")
        if not [t for t in spec.topics if t]:
            raise ResourceInvalid("spec.topics", "missing field(s)")
        if spec.delivery is not None:
            spec.delivery.validate_at("spec.delivery")
        # 0 is Knative's too (a source scaled to zero, by hand or by KEDA): Ready, with no consumer running.
        if not 0 <= self.consumers <= KAFKA_SOURCE_MAX_CONSUMERS:
            raise ResourceInvalid(
                "spec.consumers",
                f"must be between 0 and {KAFKA_SOURCE_MAX_CONSUMERS} (the consumers in the source's "
                f"consumer group; 0 runs none), got {self.consumers}",
            )


KINDS: tuple[type[Resource], ...] = (PingSource, ApiServerSource, ContainerSource, SinkBinding, KafkaSource)
