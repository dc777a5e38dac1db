"""Destination resolution: a Destination (``ref`` and/or ``uri``) becomes a URL, or a reason why not.

A ref to a kind keventing serves resolves to that resource's address. A ref to any other kind (a core
``v1`` Service, a Knative Service, any Addressable) resolves through ``addressables``: what the adapter found
of the objects the resources refer to (:func:`foreign_refs`). The Kubernetes adapter looks them up on the
API server; local mode has no such objects (``addressables`` is None) and says to use a uri instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple
from urllib.parse import urljoin, urlparse

from pydantic import BaseModel

from keventing.resources import KINDS, Destination, KReference, Resource, ResourceKey, Status


class Unresolvable(Exception):
    """The destination cannot be resolved yet; the message goes into the referrer's status."""


class ObjectRef(NamedTuple):
    """An object of a kind keventing does not serve that a Destination refers to (namespace filled in)."""

    api_version: str
    kind: str
    namespace: str
    name: str

    def described(self) -> str:
        group = self.api_version.rpartition("/")[0]
        kind = f"{self.kind}.{group}" if group else self.kind
        return f'{kind} "{self.name}" in namespace "{self.namespace}"'


def is_foreign(ref: KReference) -> bool:
    """True for a ref to a kind keventing does not serve (the adapter must look it up)."""
    return ref.kind not in KINDS


def object_ref(ref: KReference, namespace: str) -> ObjectRef:
    if not ref.apiVersion:
        raise Unresolvable(f"ref to {ref.kind} {ref.name!r} has no apiVersion: name the API it is served at")
    return ObjectRef(ref.apiVersion, ref.kind, ref.namespace or namespace, ref.name)


def service_url(name: str, namespace: str) -> str:
    """Where a core v1 Service is reached in the cluster (Knative's rule; the Service needs no address)."""
    return f"http://{name}.{namespace}.svc.cluster.local"


def foreign_refs(resources: Iterable[Resource]) -> set[ObjectRef]:
    """Every object of a foreign kind that a Destination in the resources refers to."""
    out: set[ObjectRef] = set()
    for resource in resources:
        # Destinations are intent: only the spec holds them (walking statuses would cost every pass).
        for destination in _destinations(getattr(resource, "spec", None)):
            if destination.ref is not None and is_foreign(destination.ref) and destination.ref.apiVersion:
                out.add(object_ref(destination.ref, resource.namespace))
    return out


def _destinations(value: object) -> Iterator[Destination]:
    if isinstance(value, Destination):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _destinations(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _destinations(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _destinations(item)


class Resolver:
    def __init__(
        self,
        addresses: Mapping[ResourceKey, str | None],
        resources: Mapping[ResourceKey, Resource],
        addressables: Mapping[ObjectRef, str | None] | None = None,
        statuses: Mapping[ResourceKey, Status] | None = None,
        oidc: bool = True,
    ):
        # addresses: every addressable resource keventing serves → its URL (None while it is not ready)
        self.addresses = addresses
        self.resources = resources
        # addressables: the foreign objects that exist → their URL (None while they have none); None when
        # the adapter has no foreign objects to look up (local mode).
        self.addressables = addressables
        # The statuses of the resources keventing serves: their addresses' CACerts and audience.
        self.statuses = statuses or {}
        # authentication-oidc: without it no destination has an audience (a token is never asked for).
        self.oidc = oidc

    def trust(self, destination: Destination, namespace: str) -> tuple[str | None, str | None]:
        """The CA certificates (PEM) and the OIDC audience to deliver to ``destination`` with: its own
        ``CACerts`` and ``audience``, else those its ref's address publishes (a resource keventing serves)."""
        ca_certs, audience = destination.CACerts, destination.audience
        ref = destination.ref
        if ref is not None and not is_foreign(ref) and (ca_certs is None or audience is None):
            status = self.statuses.get(ResourceKey(ref.kind, ref.namespace or namespace, ref.name))
            address = status.address if status is not None else None
            if address is not None:
                ca_certs = ca_certs or address.CACerts
                audience = audience or address.audience
        return ca_certs, audience if self.oidc else None

    def resolve(self, destination: Destination, namespace: str) -> str:
        if destination.ref is None:
            assert destination.uri is not None
            if not urlparse(destination.uri).scheme:
                raise Unresolvable(f"uri {destination.uri!r} is not an absolute URL")
            return destination.uri
        url = self._resolve_ref(destination.ref, namespace)
        if destination.uri:
            # RFC 3986 reference resolution against the ref's address, as Knative's resolver does.
            return urljoin(url, destination.uri)
        return url

    def _resolve_ref(self, ref: KReference, namespace: str) -> str:
        if is_foreign(ref):
            return self._resolve_foreign(ref, namespace)
        kind = ref.kind
        if not KINDS[kind].ADDRESSABLE:
            raise self._not_addressable(ref)
        key = ResourceKey(kind, ref.namespace or namespace, ref.name)
        described = f'{ref.kind} "{ref.name}" in namespace "{key.namespace}"'
        if key not in self.resources:
            raise Unresolvable(f"{described} does not exist")
        url = self.addresses.get(key)
        if url is None:
            raise Unresolvable(f"{described} is not ready: it has no address yet")
        return url

    def _resolve_foreign(self, ref: KReference, namespace: str) -> str:
        if self.addressables is None:
            raise self._not_addressable(ref)
        target = object_ref(ref, namespace)
        if target not in self.addressables:
            raise Unresolvable(f"{target.described()} does not exist")
        if target.api_version == "v1" and target.kind == "Service":
            return service_url(target.name, target.namespace)
        url = self.addressables[target]
        if not url:
            raise Unresolvable(f"{target.described()} has no status.address.url yet")
        return url

    @staticmethod
    def _not_addressable(ref: KReference) -> Unresolvable:
        addressable = ", ".join(sorted(k for k, c in KINDS.items() if c.ADDRESSABLE))
        return Unresolvable(
            f"{ref.kind} is not a kind keventing can address ({addressable}); use uri for anything else"
        )
