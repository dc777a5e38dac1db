"""Entry point: ``kev receiver`` serves the ingress with uvicorn (uvloop, httptools)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from types import FrameType
from typing import Any

import uvicorn
import uvloop

from keventing import logs, otlpmetrics, tracing
from receiver.app import ReceiverApp
from receiver.protocol import IngressProtocol
from receiver.settings import ReceiverSettings


def create_app() -> ReceiverApp:
    """App factory, so that each uvicorn worker process builds its own producer and contract follower."""
    settings = ReceiverSettings()
    logs.setup("receiver", settings.log_level, settings.log_format)
    otlpmetrics.start_or_exit("keventing-receiver", "kev receiver")  # in each worker: its own series
    return ReceiverApp(settings, tracing=tracing.from_env("keventing-receiver"))


def uvicorn_options(settings: ReceiverSettings) -> dict[str, Any]:
    """How the receiver is served; bench/ceiling.py serves its HTTP ceiling with exactly the same."""
    return {
        "host": settings.http_host,
        "port": settings.http_port,
        "workers": settings.workers if settings.workers > 1 else None,
        "loop": "uvloop",
        "http": IngressProtocol,
        # Between requests on a kept-alive connection (before the next request's first byte).
        "timeout_keep_alive": 5,
        # SIGTERM: requests in flight get this long, then they are cancelled; never an unbounded wait.
        "timeout_graceful_shutdown": max(1, round(settings.shutdown_timeout_seconds)),
        "log_config": None,
        "access_log": False,
        # Nothing reads the client's address: uvicorn's X-Forwarded-For middleware would cost every request.
        "proxy_headers": False,
    }


@contextlib.contextmanager
def multiprocess_metrics(settings: ReceiverSettings) -> Iterator[None]:
    """With several workers each counts its own requests: prometheus-client's multiprocess mode keeps the
    values in files of one directory, and /metrics sums them (see receiver.app)."""
    if settings.workers <= 1 or settings.metrics_multiproc_dir:
        yield
        return
    path = tempfile.mkdtemp(prefix="keventing-receiver-metrics-")
    # prometheus-client reads the variable itself, in the workers uvicorn spawns: it must be in the environment.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


class _HttpsCompanion(uvicorn.Server):
    """The HTTPS server beside the HTTP one, on the same app: the HTTP server owns the signals and the
    lifespan (one producer, one contract follower) and tells this one when to exit."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _HttpServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, companion: uvicorn.Server) -> None:
        super().__init__(config)
        self.companion = companion

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.companion.should_exit = True
        super().handle_exit(sig, frame)


async def serve_http_and_https(settings: ReceiverSettings) -> None:
    """Both listeners in one process, one app (transport-encryption permissive or strict)."""
    app = create_app()
    options = {k: v for k, v in uvicorn_options(settings).items() if k not in ("workers", "loop")}
    https = _HttpsCompanion(
        uvicorn.Config(
            app,
            lifespan="off",
            **{**options, "port": settings.https_port},
            ssl_certfile=settings.tls_cert_file,
            ssl_keyfile=settings.tls_key_file,
        )
    )
    http = _HttpServer(uvicorn.Config(app, lifespan="on", **options), https)
    await asyncio.gather(http.serve(), https.serve())


def main() -> None:
    try:
        tracing.check_env()
    except tracing.TracingConfigError as err:
        raise SystemExit(f"kev receiver: {err}") from None
    settings = ReceiverSettings()
    problem = settings.problem()
    if problem is not None:
        raise SystemExit(f"kev receiver: {problem}")
    settings.contract_keys()  # none configured: refuse to start, before any worker is spawned
    try:
        otlpmetrics.from_env("keventing-receiver")  # checked here; started by each worker (create_app)
    except otlpmetrics.MetricsConfigError as err:
        raise SystemExit(f"kev receiver: {err}") from None
    logs.setup("receiver", settings.log_level, settings.log_format)
    if settings.serves_https:
        uvloop.run(serve_http_and_https(settings))
        return
    with multiprocess_metrics(settings):
        uvicorn.run("receiver.main:create_app", factory=True, lifespan="on", **uvicorn_options(settings))
