"""Entry point: ``kev controller`` runs the controller (local store, or ``--kubernetes``) and its ops endpoints."""

from __future__ import annotations

import asyncio
import logging

from controller.kubernetes.leader import LeadershipLost
from controller.local import LocalController
from controller.settings import ControllerSettings
from keventing import logs, otlpmetrics
from keventing.ops import ops_app, run_forever, serve, together

log = logging.getLogger("keventing.controller")


async def run(settings: ControllerSettings) -> None:
    controller = LocalController(settings)
    app = ops_app(lambda: controller.synced)
    await together(controller.run(), serve(app, settings.http_host, settings.http_port))


async def run_kubernetes(settings: ControllerSettings) -> None:
    """The operator's ops endpoints at once; the operator itself once this replica leads (if it elects)."""
    from controller.kubernetes.access import KubeAccess
    from controller.kubernetes.runner import KubernetesOperator, OperatorStopped, leader_elector

    access = await KubeAccess.load(settings.kubeconfig, settings.kube_context)
    elector = leader_elector(settings, access) if settings.leader_election else None
    operator = KubernetesOperator(settings, access, elector)
    app = ops_app(operator.ready)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(serve(app, settings.http_host, settings.http_port))
            tasks.create_task(operator.run())
    except* OperatorStopped:
        log.info("stopped")
    finally:
        await access.close()


def main(settings: ControllerSettings | None = None) -> None:
    settings = settings or ControllerSettings()
    settings.contract_keys()  # none configured: refuse to start, before electing a leader or serving
    logs.setup("controller", settings.log_level, settings.log_format)
    otlpmetrics.start_or_exit("keventing-controller", "kev controller")
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
