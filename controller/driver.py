"""Driving an adapter: a reconcile pass after every burst of changes, on every resync, and after a failure.

Both adapters (local store, Kubernetes) are driven the same way; only how they learn of a change differs.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controller.adapter import Adapter, ReconcilePass
from controller.context import ControllerConfig, Desired
from keventing.metrics import MetricSet

log = logging.getLogger("keventing.controller")


class ControllerMetrics(MetricSet):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.reconciles = Counter(
            "keventing_controller_reconcile_total", "Reconcile passes", ["outcome"], registry=registry
        )
        self.reconcile_seconds = Histogram(
            "keventing_controller_reconcile_duration_seconds",
            "Duration of a reconcile pass",
            registry=registry,
        )
        self.resources = Gauge(
            "keventing_controller_resources",
            "Resources known to the controller",
            ["kind", "ready"],
            registry=registry,
        )
        # One series per resource (as kube-state-metrics does for Pods): an alert can name what is not Ready.
        self.resource_ready = Gauge(
            "keventing_controller_resource_ready",
            "1 when the resource's Ready condition is True, else 0",
            ["kind", "namespace_name", "name"],
            registry=registry,
        )

    def count(self, desired: Desired) -> None:
        self.resources.clear()
        self.resource_ready.clear()
        counts: dict[tuple[str, str], int] = {}
        for key, status in desired.statuses.items():
            label = (key.kind, str(status.ready).lower())
            counts[label] = counts.get(label, 0) + 1
            self.resource_ready.labels(key.kind, key.namespace, key.name).set(1 if status.ready else 0)
        for (kind, ready), n in counts.items():
            self.resources.labels(kind, ready).set(n)


class Driver:
    def __init__(
        self,
        adapter: Adapter,
        config: ControllerConfig,
        resync_seconds: float,
        metrics: ControllerMetrics | None = None,
        coalesce_seconds: float = 0.02,
    ) -> None:
        self.adapter = adapter
        self.config = config
        self.resync_seconds = resync_seconds
        self.metrics = metrics or ControllerMetrics.of()
        self.coalesce_seconds = coalesce_seconds
        self._changed = asyncio.Event()
        self._passes = 0
        self._passed = asyncio.Condition()

    @property
    def passes(self) -> int:
        return self._passes

    def changed(self) -> None:
        self._changed.set()

    async def passed_after_now(self) -> None:
        """Wait for a whole pass that started after this call (a pass under way may predate a change)."""
        async with self._passed:
            target = self._passes + 2
            self._changed.set()
            await self._passed.wait_for(lambda: self._passes >= target)

    async def run(self) -> None:
        resync = asyncio.create_task(self._resync())
        try:
            while True:
                await self._changed.wait()
                await asyncio.sleep(self.coalesce_seconds)  # a burst of changes makes one pass
                self._changed.clear()
                await self._pass()
                async with self._passed:
                    self._passes += 1
                    self._passed.notify_all()
        finally:
            resync.cancel()

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            self._changed.set()

    async def _pass(self) -> None:
        started = time.perf_counter()
        reconcile_pass = ReconcilePass(self.adapter, self.config)
        try:
            await reconcile_pass.run()
            self.metrics.reconciles.labels("success").inc()
        except Exception:
            self.metrics.reconciles.labels("error").inc()
            log.exception("reconcile failed; retrying shortly")
            await asyncio.sleep(1)
            self._changed.set()
        finally:
            self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
            self.metrics.count(reconcile_pass.desired)
