"""Following the few ConfigMaps the operator reads: Knative's config-br-defaults, config-features and
config-kafka-features, and the broker configs Brokers reference (``spec.config``, or their default from
config-br-defaults).

Each wanted ConfigMap is watched on its own (a list and watch with ``fieldSelector=metadata.name=…`` in its
namespace), so the operator holds those ConfigMaps and no other, whatever the cluster stores. A change calls
``changed`` (the reconcile driver); a ConfigMap no Broker references any more stops being watched.

The same watch follows the Secrets that Kafka connections reference (``kind="Secret"``): only those, one
by one, so the operator reads no Secret that no broker config, KafkaSink or KafkaSource names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import watch

from keventing.resources import ConfigMap, ObjectMeta, ResourceKey, Secret

log = logging.getLogger("keventing.controller.kubernetes")

# How long a newly wanted ConfigMap may take to be read before the pass goes on without it.
FIRST_READ_SECONDS = 10.0
WATCH_SECONDS = 300


class _Follower:
    def __init__(self) -> None:
        self.data: dict[str, str] | None = None
        self.read = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class ConfigMapWatch:
    def __init__(self, api: k8s.ApiClient, changed: Callable[[], None], kind: str = ConfigMap.KIND) -> None:
        self.core = k8s.CoreV1Api(api)
        self.changed = changed
        self.kind = kind
        self._list = (
            self.core.list_namespaced_secret if kind == Secret.KIND else self.core.list_namespaced_config_map
        )
        self._followers: dict[ResourceKey, _Follower] = {}

    async def follow(self, keys: Iterable[ResourceKey]) -> None:
        """Follow these ConfigMaps too; returns once each new one has been read (or a while has passed)."""
        new = []
        for key in set(keys) - set(self._followers):
            follower = self._followers[key] = _Follower()
            follower.task = asyncio.create_task(self._follow(key, follower), name=f"configmap {key}")
            new.append(follower)
        if new:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_READ_SECONDS):
                    await asyncio.gather(*(f.read.wait() for f in new))

    def retain(self, keys: Iterable[ResourceKey]) -> None:
        """Stop following the ConfigMaps not among ``keys``."""
        wanted = set(keys)
        for key in set(self._followers) - wanted:
            follower = self._followers.pop(key)
            if follower.task is not None:
                follower.task.cancel()

    def config_maps(self) -> list[ConfigMap | Secret]:
        """The followed ConfigMaps (or Secrets) that exist, as the reconciler's resources."""
        model = Secret if self.kind == Secret.KIND else ConfigMap
        return [
            model(
                apiVersion="v1",
                kind=self.kind,
                metadata=ObjectMeta(name=key.name, namespace=key.namespace),
                data=follower.data,
            )
            for key, follower in self._followers.items()
            if follower.data is not None
        ]

    def has_read(self, key: ResourceKey) -> bool:
        follower = self._followers.get(key)
        return follower is not None and follower.read.is_set()

    def data(self, key: ResourceKey) -> dict[str, str] | None:
        follower = self._followers.get(key)
        return follower.data if follower is not None else None

    def close(self) -> None:
        self.retain(())

    def _set(self, follower: _Follower, data: dict[str, str] | None) -> None:
        before = follower.data
        follower.data = data
        follower.read.set()
        if data != before:
            self.changed()

    async def _follow(self, key: ResourceKey, follower: _Follower) -> None:
        selector = f"metadata.name={key.name}"
        while True:
            try:
                listing = await self._list(key.namespace, field_selector=selector)
                items = listing.items or []
                self._set(follower, dict(items[0].data or {}) if items else None)
                stream = watch.Watch()
                try:
                    async for event in stream.stream(
                        self._list,
                        key.namespace,
                        field_selector=selector,
                        resource_version=listing.metadata.resource_version,
                        timeout_seconds=WATCH_SECONDS,
                    ):
                        if event["type"] == "DELETED":
                            self._set(follower, None)
                        elif event["type"] in ("ADDED", "MODIFIED"):
                            self._set(follower, dict(event["object"].data or {}))
                finally:
                    await stream.close()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the API server restarting, a 410 Gone: list again shortly
                log.warning(f"cannot watch a {self.kind}", extra={"object": str(key), "reason": str(err)})
                await asyncio.sleep(1)
