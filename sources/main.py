"""Entry point: ``kev sources`` runs the source adapters and their HTTP endpoints."""

from __future__ import annotations

from keventing import logs, otlpmetrics
from keventing.ops import run_forever, serve, together
from sources.api import sources_app
from sources.clock import Clock, ManualClock, WallClock
from sources.runner import SourceRunner
from sources.settings import SourcesSettings


async def run(settings: SourcesSettings) -> None:
    clock: Clock = ManualClock() if settings.clock == "manual" else WallClock()
    runner = SourceRunner(settings, clock)
    await together(runner.run(), serve(sources_app(runner), settings.http_host, settings.http_port))


def main() -> None:
    settings = SourcesSettings()
    settings.contract_keys()  # none configured: refuse to start
    logs.setup("sources", settings.log_level, settings.log_format)
    otlpmetrics.start_or_exit("keventing-sources", "kev sources")
    run_forever(lambda: run(settings))
