"""Destination resolution: a Destination (``ref`` and/or ``uri``) becomes a URL, or a reason why not."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urljoin, urlparse

from keventing.resources import Destination, Resource, ResourceKey


class Unresolvable(Exception):
    """The destination cannot be resolved yet; the message goes into the referrer's status."""


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
        key = ResourceKey(ref.kind, ref.namespace or namespace, ref.name)
        if key not in self.resources:
            raise Unresolvable(f'{ref.kind} "{ref.name}" in namespace "{key.namespace}" does not exist')
        url = self.addresses.get(key)
        if key not in self.addresses:
            raise Unresolvable(f"{ref.kind} {key.namespace}/{ref.name} is not addressable")
        if url is None:
            raise Unresolvable(f"{ref.kind} {key.namespace}/{ref.name} has no address yet")
        if destination.uri:
            return urljoin(url.rstrip("/") + "/", destination.uri)
        return url
