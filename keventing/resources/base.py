"""Building blocks shared by every resource: metadata, status conditions, destinations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, NamedTuple
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, model_validator

from keventing.naming import is_dns_label, is_dns_subdomain


class ResourceInvalid(ValueError):
    """A resource failed validation; ``field`` is the path of the bad field (``spec.delivery.retry``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


class ResourceKey(NamedTuple):
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> ResourceKey:
        kind, namespace, name = text.split("/", 2)
        return cls(kind, namespace, name)


class Model(BaseModel):
    """Knative's schemas reject unknown fields; so do we, so that typos surface at apply time."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)


class OpenModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class OwnerReference(OpenModel):
    apiVersion: str
    kind: str
    name: str
    uid: str | None = None
    controller: bool | None = None


class ObjectMeta(OpenModel):
    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int = 1
    uid: str | None = None
    creationTimestamp: str | None = None
    ownerReferences: list[OwnerReference] = Field(default_factory=list)


class KReference(Model):
    kind: str
    name: str
    apiVersion: str | None = None
    namespace: str | None = None
    group: str | None = None


class Destination(Model):
    """Knative's Destination: a ``ref`` to an addressable resource, a ``uri``, or a ``uri`` relative to a ref."""

    ref: KReference | None = None
    uri: str | None = None
    CACerts: str | None = None
    audience: str | None = None

    def validate_at(self, path: str) -> None:
        if self.ref is None and not self.uri:
            raise ResourceInvalid(path, "expected at least one of ref or uri")
        if self.ref is not None and self.uri and urlparse(self.uri).scheme:
            # Next to a ref, uri is a reference resolved against the ref's address (Knative's rule).
            raise ResourceInvalid(f"{path}.uri", "an absolute URI is not allowed when ref is present")
        if self.ref is None and self.uri:
            scheme = urlparse(self.uri).scheme.lower()
            if scheme not in ("http", "https"):
                # Events are delivered over HTTP; anything else would be accepted and never delivered.
                raise ResourceInvalid(f"{path}.uri", f"{self.uri!r} is not an http:// or https:// URI")


class Condition(OpenModel):
    type: str
    status: Literal["True", "False", "Unknown"] = "Unknown"
    reason: str | None = None
    message: str | None = None
    severity: str | None = None
    lastTransitionTime: str | None = None


class Address(OpenModel):
    """Knative's Addressable: the URL, the CA certificates (PEM) that sign its TLS certificate when it is
    https, and the OIDC audience a sender's token must be for."""

    url: str | None = None
    name: str | None = None
    CACerts: str | None = None
    audience: str | None = None


class Status(OpenModel):
    observedGeneration: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    address: Address | None = None
    # Every address the resource is reachable at (transport-encryption permissive: https and http).
    addresses: list[Address] | None = None
    # The EventPolicies that apply to it (authentication-oidc): {apiVersion, name} each.
    policies: list[dict[str, str]] | None = None
    # Knative's AuthStatus (authentication-oidc): {"serviceAccountName": the resource's OIDC identity}.
    auth: dict[str, str] | None = None
    annotations: dict[str, str] | None = None

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def ready(self) -> bool:
        ready = self.condition("Ready")
        return ready is not None and ready.status == "True"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Resource(OpenModel):
    """A Knative resource: apiVersion, kind, metadata, spec, status."""

    API_VERSIONS: ClassVar[tuple[str, ...]] = ()
    KIND: ClassVar[str] = ""
    PLURAL: ClassVar[str] = ""
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ()
    ADDRESSABLE: ClassVar[bool] = False
    # Served in Kubernetes mode only (JobSink): `kev apply` warns in local mode, where it is never Ready.
    KUBERNETES_ONLY: ClassVar[bool] = False

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: Any = None
    status: Status = Field(default_factory=Status)

    @model_validator(mode="before")
    @classmethod
    def _null_spec_is_absent(cls, data: Any) -> Any:
        """``spec:`` with nothing under it (YAML null) is no spec, as in Kubernetes, which prunes a null
        non-nullable field before validating: Knative's docs print ``spec:`` followed only by a comment."""
        if isinstance(data, dict) and "spec" in data and data["spec"] is None:
            return {k: v for k, v in data.items() if k != "spec"}
        return data

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.KIND, self.metadata.namespace, self.metadata.name)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    def validate_identity(self) -> None:
        """The namespace is a DNS label and the name a DNS subdomain, as Kubernetes requires: topic and group
        names rely on the namespace being one (see :mod:`keventing.naming`), and a name Kubernetes refuses
        (a template's ``<name>``) would apply locally and fail on a cluster."""
        if not is_dns_subdomain(self.metadata.name):
            raise ResourceInvalid(
                "metadata.name",
                f"{self.metadata.name!r} is not a valid name: lower-case letters, digits, '-' and '.', "
                "starting and ending with a letter or digit, at most 253 characters",
            )
        if not is_dns_label(self.metadata.namespace):
            raise ResourceInvalid(
                "metadata.namespace",
                f"{self.metadata.namespace!r} is not a valid namespace: lower-case letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters",
            )

    def validate_semantics(self) -> None:
        """Checks beyond the schema (cross-field rules); raise :class:`ResourceInvalid`."""

    def warnings(self) -> list[str]:
        """Fields accepted, so that Knative YAML applies, but not applied as Knative would: each a message
        naming the field. ``kev apply`` prints them and the resource's status repeats them."""
        return []

    def display_document(self) -> dict[str, Any]:
        """What ``kev get -o yaml`` and ``kev describe`` show: the document, minus what must never be shown."""
        return self.to_document()

    def to_document(self, with_status: bool = True) -> dict[str, Any]:
        doc = self.model_dump(mode="json", exclude_none=True, exclude={"status"}, by_alias=True)
        # Empty labels, annotations and owner references are noise in `kev get -o yaml`, as in kubectl.
        doc["metadata"] = {k: v for k, v in doc["metadata"].items() if v != {} and v != []}
        if with_status:
            doc["status"] = self.status.model_dump(mode="json", exclude_none=True)
        return doc
