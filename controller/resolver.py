"""Destination resolution: a Destination (``ref`` and/or ``uri``) becomes a URL, or a reason why not."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urljoin, urlparse

from keventing.resources import KINDS, Destination, Resource, ResourceKey

# Kinds Knative YAML may name that keventing serves as another kind: every channel is a KafkaChannel.
KIND_ALIASES = {"InMemoryChannel": "KafkaChannel"}


class Unresolvable(Exception):
    """The destination cannot be resolved yet; the message goes into the referrer's status."""


def served_kind(kind: str) -> str:
    return KIND_ALIASES.get(kind, kind)


class Resolver:
    def __init__(
        self, addresses: Mapping[ResourceKey, str | None], resources: Mapping[ResourceKey, Resource]
    ):
        # addresses: every addressable resource keventing serves → its URL (None while it is not ready)
        self.addresses = addresses
        self.resources = resources

    def resolve(self, destination: Destination, namespace: str) -> str:
        if destination.ref is None:
            assert destination.uri is not None
            if not urlparse(destination.uri).scheme:
                raise Unresolvable(f"uri {destination.uri!r} is not an absolute URL")
            return destination.uri
        ref = destination.ref
        kind = served_kind(ref.kind)
        cls = KINDS.get(kind)
        if cls is None or not cls.ADDRESSABLE:
            addressable = ", ".join(sorted(k for k, c in KINDS.items() if c.ADDRESSABLE))
            raise Unresolvable(
                f"{ref.kind} is not a kind keventing can address ({addressable}); use uri for anything else"
            )
        key = ResourceKey(kind, ref.namespace or namespace, ref.name)
        described = f'{ref.kind} "{ref.name}" in namespace "{key.namespace}"'
        if key not in self.resources:
            raise Unresolvable(f"{described} does not exist")
        url = self.addresses.get(key)
        if url is None:
            raise Unresolvable(f"{described} is not ready: it has no address yet")
        if destination.uri:
            # RFC 3986 reference resolution against the ref's address, as Knative's resolver does.
            return urljoin(url, destination.uri)
        return url
