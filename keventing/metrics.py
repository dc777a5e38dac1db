"""Metrics are objects handed to the code that updates them, not module globals.

Each service defines its metrics as a ``MetricSet`` subclass whose constructor registers them in a given
registry; ``of()`` returns the one set registered in a registry (a registry holds each name once), so a
served process shares the default registry and a test can use a private one.
"""

from __future__ import annotations

from typing import ClassVar, Self

from prometheus_client import REGISTRY, CollectorRegistry


class MetricSet:
    _registered: ClassVar[dict[tuple[type, int], MetricSet]] = {}

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    @classmethod
    def of(cls, registry: CollectorRegistry = REGISTRY) -> Self:
        key = (cls, id(registry))
        metrics = MetricSet._registered.get(key)
        if metrics is None:
            metrics = MetricSet._registered[key] = cls(registry)
        assert isinstance(metrics, cls)
        return metrics
