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


# How long a deletion waits for a pass that succeeds before a failed one releases it.
FINALIZE_PATIENCE_SECONDS = 30.0


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
        self._last_success = 0  # the number of the last pass that succeeded
        self._passed = asyncio.Condition()

    @property
    def passes(self) -> int:
        return self._passes

    def changed(self) -> None:
        self._changed.set()

    async def passed_after_now(self, patience: float = FINALIZE_PATIENCE_SECONDS) -> None:
        """Wait for a whole pass that started after this call (a pass under way may predate a change) and
        succeeded, so that what it cleans up is gone. While passes fail (for another object's error, say a
        namespace being terminated), at most ``patience`` seconds: then any whole pass will do, so that one
        error never holds every deletion (a later pass still cleans up what is left: retired groups and
        topics are retried)."""
        async with self._passed:
            target = self._passes + 2
            self._changed.set()
            try:
                async with asyncio.timeout(patience):
                    await self._passed.wait_for(lambda: self._last_success >= target)
            except TimeoutError:
                log.warning("no reconcile pass succeeded in time: releasing a deletion after a failed one")
                await self._passed.wait_for(lambda: self._passes >= target)

    async def run(self) -> None:
        resync = asyncio.create_task(self._resync())
        try:
            while True:
                await self._changed.wait()
                await asyncio.sleep(self.coalesce_seconds)  # a burst of changes makes one pass
                self._changed.clear()
                succeeded = await self._pass()
                async with self._passed:
                    self._passes += 1
                    if succeeded:
                        self._last_success = self._passes
                    self._passed.notify_all()
        finally:
            resync.cancel()

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            self._changed.set()

    async def _pass(self) -> bool:
        started = time.perf_counter()
        reconcile_pass = ReconcilePass(self.adapter, self.config)
        try:
            await reconcile_pass.run()
            self.metrics.reconciles.labels("success").inc()
            return True
        except Exception:
            self.metrics.reconciles.labels("error").inc()
            log.exception("reconcile failed; retrying shortly")
            await asyncio.sleep(1)
            self._changed.set()
            return False
        finally:
            self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
            self.metrics.count(reconcile_pass.desired)
