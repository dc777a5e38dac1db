"""Entry point: ``kev receiver`` serves the ingress with uvicorn (uvloop, httptools)."""

from __future__ import annotations

import uvicorn

from keventing import logs
from receiver.app import ReceiverApp
from receiver.settings import ReceiverSettings


def create_app() -> ReceiverApp:
    """App factory, so that each uvicorn worker process builds its own producer and contract follower."""
    settings = ReceiverSettings()
    logs.setup("receiver", settings.log_level, settings.log_format)
    return ReceiverApp(settings)


def main() -> None:
    settings = ReceiverSettings()
    logs.setup("receiver", settings.log_level, settings.log_format)
    uvicorn.run(
        "receiver.main:create_app",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        workers=settings.workers if settings.workers > 1 else None,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        lifespan="on",
    )
