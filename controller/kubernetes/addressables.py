"""Looking up the objects of foreign kinds that Destinations refer to: core Services, Knative Services, any
Addressable (an object with ``status.address.url``).

Each pass GETs every distinct referenced object once (bounded concurrency), so an object that appears or
gets its address later is seen within a resync; when a GET fails for another reason than absence, the last
pass's answer stands. Which resource (plural) serves a kind comes from API
discovery, cached once found; a group/version the API server does not serve yet is asked again next time
(its CRD may be installed later).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from kubernetes_asyncio import client as k8s

from controller.resolver import ObjectRef

log = logging.getLogger("keventing.controller.kubernetes")


class ApiResource(NamedTuple):
    plural: str
    namespaced: bool


class AddressableLookup:
    def __init__(self, api: k8s.ApiClient, concurrency: int = 8) -> None:
        self.api = api
        self._resources: dict[tuple[str, str], ApiResource] = {}
        self._limit = asyncio.Semaphore(concurrency)
        self._last: dict[ObjectRef, str | None] = {}

    async def lookup(self, refs: Iterable[ObjectRef]) -> dict[ObjectRef, str | None]:
        """The referenced objects that exist → their address (None while they have none)."""
        wanted = sorted(set(refs))
        found = await asyncio.gather(*(self._get(ref) for ref in wanted))
        self._last = {
            ref: address_of(body) for ref, body in zip(wanted, found, strict=True) if body is not None
        }
        return dict(self._last)

    async def _get(self, ref: ObjectRef) -> dict[str, Any] | None:
        try:
            return await self._fetch(ref)
        except (k8s.ApiException, OSError, TimeoutError) as err:
            # A blip (an aggregated API down, a timeout) must neither stop every reconcile pass nor flap
            # the referrer's Ready: keep what the last pass saw (never seen: not resolvable yet).
            log.warning(
                "cannot get a referenced object", extra={"object": ref.described(), "reason": str(err)}
            )
            if ref in self._last:
                return {"status": {"address": {"url": self._last[ref]}}}
            return None

    async def _fetch(self, ref: ObjectRef) -> dict[str, Any] | None:
        async with self._limit:
            resource = await self._resource(ref.api_version, ref.kind)
            if resource is None:
                return None
            base = f"/api/{ref.api_version}" if "/" not in ref.api_version else f"/apis/{ref.api_version}"
            scope = f"/namespaces/{ref.namespace}" if resource.namespaced else ""
            try:
                return await self._get_json(f"{base}{scope}/{resource.plural}/{ref.name}")
            except k8s.ApiException as err:
                if err.status == 403:
                    log.warning("may not get a referenced object", extra={"object": ref.described()})
                    return None
                if err.status == 404:
                    return None
                raise

    async def _resource(self, api_version: str, kind: str) -> ApiResource | None:
        """The resource serving ``kind`` at ``api_version``, from API discovery (None if none does)."""
        cached = self._resources.get((api_version, kind))
        if cached is not None:
            return cached
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        try:
            listing = await self._get_json(path)
        except k8s.ApiException as err:
            if err.status in (403, 404):
                return None
            raise
        for entry in listing.get("resources", []):
            name = entry.get("name", "")
            if "/" not in name:  # not a subresource
                self._resources[(api_version, entry.get("kind", ""))] = ApiResource(
                    name, bool(entry.get("namespaced"))
                )
        return self._resources.get((api_version, kind))

    async def _get_json(self, path: str) -> dict[str, Any]:
        result = await self.api.call_api(
            path,
            "GET",
            header_params={"Accept": "application/json"},
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
        return dict(result)


def address_of(body: Mapping[str, Any]) -> str | None:
    """An Addressable's URL: ``status.address.url``, else the first of ``status.addresses`` (duck typing)."""
    status = body.get("status") or {}
    address = status.get("address") or {}
    if address.get("url"):
        return str(address["url"])
    for entry in status.get("addresses") or []:
        if entry.get("url"):
            return str(entry["url"])
    return None
