"""What one Kubernetes-mode controller replica runs: its ops endpoints' readiness, and the operator (kopf's
watches and the reconcile driver) once it holds the leader Lease, for as long as it holds it.
"""

from __future__ import annotations

import asyncio
import logging

import kopf

from controller.dataplane import KafkaDataPlane
from controller.kubernetes.access import KubeAccess
from controller.kubernetes.binder import SinkBinder
from controller.kubernetes.eventtypes import EventTypeMirror
from controller.kubernetes.leader import (
    LeaderElector,
    LeaseConfig,
    default_identity,
    default_namespace,
    hold_on_own_thread,
)
from controller.kubernetes.operator import KubernetesController
from controller.kubernetes.webhook import run_webhook
from controller.local import controller_config
from controller.settings import ControllerSettings
from keventing.kafka.compacted import CompactedTopic
from keventing.restarting import retrying

log = logging.getLogger("keventing.controller.kubernetes")


class OperatorStopped(Exception):
    """kopf stopped on a signal: the replica shuts down cleanly (and releases the Lease)."""


class KubernetesOperator:
    """Waits for the Lease, then runs kopf's watches and the reconcile driver for as long as it leads."""

    def __init__(
        self, settings: ControllerSettings, access: KubeAccess, elector: LeaderElector | None
    ) -> None:
        self.settings = settings
        self.access = access
        self.elector = elector
        self.controller: KubernetesController | None = None
        self.watching = asyncio.Event()

    def ready(self) -> bool:
        if self.controller is None:
            # A standby is ready: ready to take over, which is all a replica that does not lead can be.
            return self.elector is not None and not self.elector.leading
        return self.watching.is_set() and self.controller.driver.passes > 0

    async def run(self) -> None:
        # Every replica serves the SinkBinding webhook, the standby too: its Service selects them all.
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(run_webhook(self.access.api, self.settings))
            tasks.create_task(self._run_elected())

    async def _run_elected(self) -> None:
        if self.elector is None:
            await self._lead()
            return
        await self.elector.acquire()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._lead())
                tasks.create_task(hold_on_own_thread(self.elector, self.access.configuration))
        finally:
            await self.elector.release()  # a no-op once the Lease is lost

    async def _lead(self) -> None:
        settings = self.settings
        # kopf logs every handler run at INFO, with its settings attached: only its warnings are news here.
        logging.getLogger("kopf").setLevel(logging.WARNING)
        data_plane = KafkaDataPlane(settings)
        await retrying(data_plane.start, log, "cannot start on Kafka yet; retrying")
        controller: KubernetesController | None = None
        try:
            controller = KubernetesController(
                self.access,
                controller_config(settings),
                data_plane,
                settings.broker_class_set,
                settings.resync_seconds,
            )
            self.controller = controller
            await controller.start()
            binder = SinkBinder(self.access, settings)
            event_types = EventTypeMirror(
                CompactedTopic(
                    settings.kafka_connection,
                    settings.resources_topic,
                    settings.control_plane_replication_factor,
                ),
                self.access.api,
                controller.index.resources.get,
            )
            registry = controller.registry()
            binder.register(registry)
            namespaces = settings.namespace_list
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(controller.driver.run())
                tasks.create_task(event_types.run())
                tasks.create_task(self._watch(registry, namespaces))
        finally:
            if controller is not None:
                controller.config_maps.close()
                controller.secrets.close()
            await data_plane.stop()

    async def _watch(self, registry: kopf.OperatorRegistry, namespaces: list[str]) -> None:
        await kopf.operator(
            registry=registry,
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            ready_flag=self.watching,
        )
        # kopf takes SIGTERM and SIGINT over once it runs, and returns when one came: stop everything else.
        raise OperatorStopped("the operator was told to stop")


def leader_elector(settings: ControllerSettings, access: KubeAccess) -> LeaderElector:
    config = LeaseConfig(
        namespace=settings.leader_election_namespace or default_namespace(),
        name=settings.leader_election_lease_name or f"{settings.instance}-controller",
        identity=default_identity(),
        lease_seconds=settings.leader_election_lease_seconds,
        renew_seconds=settings.leader_election_renew_seconds,
        owner_cluster_role=settings.webhook_owner,
    )
    return LeaderElector(access.api, config)
