"""Entry point: ``kev controller`` runs the controller (local store, or ``--kubernetes``) and its ops endpoints."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from controller.kubernetes.leader import LeadershipLost
from controller.local import LocalController, controller_config
from controller.settings import ControllerSettings
from keventing import logs
from keventing.ops import ops_app, run_forever, serve

if TYPE_CHECKING:
    from controller.kubernetes.access import KubeAccess
    from controller.kubernetes.leader import LeaderElector
    from controller.kubernetes.operator import KubernetesController

log = logging.getLogger("keventing.controller")


async def run(settings: ControllerSettings) -> None:
    controller = LocalController(settings)
    app = ops_app(lambda: controller.synced)
    await asyncio.gather(controller.run(), serve(app, settings.http_host, settings.http_port))


async def run_kubernetes(settings: ControllerSettings) -> None:
    """The operator's ops endpoints at once; the operator itself once this replica leads (if it elects)."""
    from controller.kubernetes.access import KubeAccess

    access = await KubeAccess.load(settings.kubeconfig, settings.kube_context)
    elector = leader_elector(settings, access) if settings.leader_election else None
    operator = KubernetesOperator(settings, access, elector)
    app = ops_app(operator.ready)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(serve(app, settings.http_host, settings.http_port))
            tasks.create_task(operator.run())
    finally:
        await access.close()


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
        import kopf

        from controller.dataplane import KafkaDataPlane
        from controller.kubernetes.operator import KubernetesController

        if self.elector is not None:
            await self.elector.acquire()
        settings = self.settings
        # kopf logs every handler run at INFO, with its settings attached: only its warnings are news here.
        logging.getLogger("kopf").setLevel(logging.WARNING)
        data_plane = KafkaDataPlane(settings)
        await data_plane.start()
        controller = KubernetesController(
            self.access,
            controller_config(settings),
            data_plane,
            settings.broker_class_set,
            settings.resync_seconds,
        )
        self.controller = controller
        namespaces = settings.namespace_list
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(controller.driver.run())
                tasks.create_task(
                    kopf.operator(
                        registry=controller.registry(),
                        standalone=True,
                        clusterwide=not namespaces,
                        namespaces=namespaces,
                        ready_flag=self.watching,
                    )
                )
                if self.elector is not None:
                    tasks.create_task(self.elector.hold())
        finally:
            await data_plane.stop()
            if self.elector is not None:
                await self.elector.release()  # a no-op once the Lease is lost


def leader_elector(settings: ControllerSettings, access: KubeAccess) -> LeaderElector:
    from controller.kubernetes.leader import LeaderElector, LeaseConfig, default_identity, default_namespace

    config = LeaseConfig(
        namespace=settings.leader_election_namespace or default_namespace(),
        name=settings.leader_election_lease_name or f"{settings.instance}-controller",
        identity=default_identity(),
        lease_seconds=settings.leader_election_lease_seconds,
        renew_seconds=settings.leader_election_renew_seconds,
    )
    return LeaderElector(access.api, config)


def main() -> None:
    settings = ControllerSettings()
    logs.setup("controller", settings.log_level, settings.log_format)
    try:
        run_forever(lambda: run_kubernetes(settings) if settings.kubernetes else run(settings))
    except* LeadershipLost as lost:
        # Exiting is the way back to standby: Kubernetes restarts the pod, which waits for the Lease again.
        log.error("lost the leader Lease; exiting", extra={"reason": str(_first(lost))})
        raise SystemExit(1) from None


def _first(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
