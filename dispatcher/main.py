"""Entry point: ``kev dispatcher`` runs the egress manager and its ops endpoints."""

from __future__ import annotations

from dispatcher.manager import DispatcherManager
from dispatcher.settings import DispatcherSettings
from keventing import logs, otlpmetrics, tracing
from keventing.ops import ops_app, run_forever, serve, together


async def run(settings: DispatcherSettings) -> None:
    manager = DispatcherManager(settings, tracing.from_env("keventing-dispatcher"))
    await together(manager.run(), serve(ops_app(manager.ready), settings.http_host, settings.http_port))


def main() -> None:
    try:
        tracing.check_env()
    except tracing.TracingConfigError as err:
        raise SystemExit(f"kev dispatcher: {err}") from None
    settings = DispatcherSettings()
    settings.contract_keys()  # none configured: refuse to start
    logs.setup("dispatcher", settings.log_level, settings.log_format)
    otlpmetrics.start_or_exit("keventing-dispatcher", "kev dispatcher")
    run_forever(lambda: run(settings))
