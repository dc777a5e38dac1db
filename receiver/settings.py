"""The receiver's settings (environment variables, see the README)."""

from __future__ import annotations

from pydantic import Field

from keventing.settings import CommonSettings


class ReceiverSettings(CommonSettings):
    http_host: str = Field(default="0.0.0.0", alias="KEVENTING_HTTP_HOST")
    http_port: int = Field(default=8080, alias="KEVENTING_RECEIVER_PORT")
    workers: int = Field(default=1, alias="KEVENTING_RECEIVER_WORKERS")
    max_event_bytes: int = Field(default=1024 * 1024, alias="KEVENTING_MAX_EVENT_BYTES")
    # How long a request may wait for Kafka's acknowledgement before it is answered 503.
    produce_timeout_seconds: float = Field(default=10.0, alias="KEVENTING_PRODUCE_TIMEOUT_SECONDS")
    retry_after_seconds: int = Field(default=5, alias="KEVENTING_RETRY_AFTER_SECONDS")
    # 0: the producer batches what arrives while a request is in flight; lingering only adds latency.
    linger_ms: int = Field(default=0, alias="KEVENTING_PRODUCER_LINGER_MS")
    # Set (by `kev receiver` itself) when several workers serve: each keeps its metrics in files there.
    metrics_multiproc_dir: str | None = Field(default=None, alias="PROMETHEUS_MULTIPROC_DIR")
