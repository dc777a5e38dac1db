"""Entry point: ``kev receiver`` serves the ingress with uvicorn (uvloop, httptools)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import uvicorn

from keventing import logs, tracing
from receiver.app import ReceiverApp
from receiver.protocol import IngressProtocol
from receiver.settings import ReceiverSettings


def create_app() -> ReceiverApp:
    """App factory, so that each uvicorn worker process builds its own producer and contract follower."""
    settings = ReceiverSettings()
    logs.setup("receiver", settings.log_level, settings.log_format)
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


def main() -> None:
    try:
        tracing.check_env()
    except tracing.TracingConfigError as err:
        raise SystemExit(f"kev receiver: {err}") from None
    settings = ReceiverSettings()
    logs.setup("receiver", settings.log_level, settings.log_format)
    with multiprocess_metrics(settings):
        uvicorn.run("receiver.main:create_app", factory=True, lifespan="on", **uvicorn_options(settings))
