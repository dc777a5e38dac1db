"""Entry point: ``kev console`` follows the resources and the contract and serves the page."""

from __future__ import annotations

import asyncio

from kev.console.app import Console
from kev.console.state import ConsoleSettings
from keventing import logs
from keventing.ops import run_forever, serve


async def run(settings: ConsoleSettings) -> None:
    console = Console(settings)
    # Live tails are open streams: shutting down waits a second for them, not for their clients to leave.
    await asyncio.gather(
        console.run(), serve(console.app, settings.http_host, settings.http_port, timeout_graceful_shutdown=1)
    )


def main(settings: ConsoleSettings | None = None) -> None:
    settings = settings or ConsoleSettings()
    logs.setup("console", settings.log_level, settings.log_format)
    run_forever(lambda: run(settings))
