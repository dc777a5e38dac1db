"""Where each kind keventing serves lives in the Kubernetes API: group, version, plural."""

from __future__ import annotations

from typing import NamedTuple

from keventing.resources import Resource
from keventing.resources.registry import KINDS

CORE_KINDS = frozenset({"ConfigMap", "Secret"})


class ApiKind(NamedTuple):
    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def api_kind(cls: type[Resource], api_version: str | None = None) -> ApiKind:
    """The API a model is served at; its first apiVersion unless another one of its versions is named."""
    version = api_version or cls.API_VERSIONS[0]
    group, _, ver = version.rpartition("/")
    return ApiKind(group, ver, cls.PLURAL, cls.KIND)


def custom_kinds() -> list[ApiKind]:
    """Every custom resource kind keventing watches (core kinds such as ConfigMap are not custom)."""
    return [api_kind(cls) for kind, cls in sorted(KINDS.items()) if kind not in CORE_KINDS]


def by_kind(kind: str) -> ApiKind:
    return api_kind(KINDS[kind])
