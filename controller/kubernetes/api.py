"""Writing to the API server the two ways keventing does: server-side apply, and a JSON merge patch.

kubernetes_asyncio picks the patch type from the ``_content_type`` request option (its stubs do not list it),
so the options live here once.
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client as k8s

from controller.kubernetes.kinds import ApiKind, by_kind

APPLY_PATCH: dict[str, Any] = {"_content_type": "application/apply-patch+yaml"}
MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
JSON_PATCH: dict[str, Any] = {"_content_type": "application/json-patch+json"}


async def apply_custom_object(
    custom: k8s.CustomObjectsApi, document: dict[str, Any], field_manager: str, kind: ApiKind | None = None
) -> dict[str, Any] | None:
    """Server-side apply one object of a kind keventing serves (forcing its fields); the object applied, or
    None when it was created (the generated client reads back only a 200's body, not a 201's)."""
    kind = kind or by_kind(document["kind"])
    meta = document["metadata"]
    applied: dict[str, Any] | None = await custom.patch_namespaced_custom_object(
        kind.group,
        kind.version,
        meta["namespace"],
        kind.plural,
        meta["name"],
        document,
        field_manager=field_manager,
        force=True,
        **APPLY_PATCH,
    )
    return applied
