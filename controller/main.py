"""Entry point: ``kev controller`` runs the controller (local store, or ``--kubernetes``) and its ops endpoints."""

from __future__ import annotations

import asyncio
import logging

from controller.local import LocalController, controller_config
from controller.settings import ControllerSettings
from keventing import logs
from keventing.ops import ops_app, run_forever, serve


async def run(settings: ControllerSettings) -> None:
    controller = LocalController(settings)
    app = ops_app(lambda: controller.synced)
    await asyncio.gather(controller.run(), serve(app, settings.http_host, settings.http_port))


async def run_kubernetes(settings: ControllerSettings) -> None:
    import kopf

    from controller.dataplane import KafkaDataPlane
    from controller.kubernetes.access import KubeAccess
    from controller.kubernetes.binder import SinkBinder
    from controller.kubernetes.eventtypes import EventTypeMirror
    from controller.kubernetes.operator import KubernetesController
    from keventing.kafka.compacted import CompactedTopic

    # kopf logs every handler run at INFO, with its settings attached: only its warnings are news here.
    logging.getLogger("kopf").setLevel(logging.WARNING)
    access = await KubeAccess.load(settings.kubeconfig, settings.kube_context)
    data_plane = KafkaDataPlane(settings)
    await data_plane.start()
    controller = KubernetesController(
        access,
        controller_config(settings),
        data_plane,
        settings.broker_class_set,
        settings.resync_seconds,
    )
    binder = SinkBinder(access, settings)
    registry = controller.registry()
    binder.register(registry)
    watching = asyncio.Event()
    app = ops_app(lambda: watching.is_set() and controller.driver.passes > 0)
    event_types = EventTypeMirror(
        CompactedTopic(
            settings.kafka_bootstrap_servers,
            settings.resources_topic,
            settings.control_plane_replication_factor,
        ),
        access.api,
        controller.index.resources.get,
    )
    namespaces = settings.namespace_list
    try:
        await asyncio.gather(
            controller.driver.run(),
            event_types.run(),
            kopf.operator(
                registry=registry,
                standalone=True,
                clusterwide=not namespaces,
                namespaces=namespaces,
                ready_flag=watching,
            ),
            serve(app, settings.http_host, settings.http_port),
            binder.run_webhook(),
        )
    finally:
        await data_plane.stop()
        await access.close()


def main(settings: ControllerSettings | None = None) -> None:
    settings = settings or ControllerSettings()
    logs.setup("controller", settings.log_level, settings.log_format)
    run_forever(lambda: run_kubernetes(settings) if settings.kubernetes else run(settings))
