"""Entry point: ``kev controller`` runs the local-mode controller and its ops endpoints."""

from __future__ import annotations

import asyncio

from controller.local import LocalController
from controller.settings import ControllerSettings
from keventing import logs
from keventing.ops import ops_app, run_forever, serve


async def run(settings: ControllerSettings) -> None:
    controller = LocalController(settings)
    app = ops_app(lambda: controller.synced)
    await asyncio.gather(controller.run(), serve(app, settings.http_host, settings.http_port))


def main() -> None:
    settings = ControllerSettings()
    logs.setup("controller", settings.log_level, settings.log_format)
    run_forever(lambda: run(settings))
